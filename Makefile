# Two entry points for a newcomer; both set up .venv first (scripts/setup.sh, idempotent).
PY := .venv/bin/python

.PHONY: setup demo test test-all bench lint synthetic clean

setup:
	@bash scripts/setup.sh

demo: setup
	$(PY) tools/demo.py

test: setup
	$(PY) -m ruff check .
	$(PY) -m pytest

test-all: setup
	$(PY) -m pytest -m ""

bench: setup
	$(PY) -m pip install -q -e ".[bench]" && $(PY) -m pip install -q --no-deps ros2-numpy
	$(PY) benchmarks/run.py --quick

synthetic: setup
	$(PY) tools/make_synthetic.py --out data/synthetic30 --scenes 30 --samples 40 --seed 0

clean:
	rm -rf demo_out data/demo
