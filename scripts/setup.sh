#!/usr/bin/env bash
# Sets up .venv with everything PromptFusion needs. Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}

# Open3D needs Debian's libusb-1.0-0. Install it when we may; otherwise say how.
if ! ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0'; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    (apt-get install -y -qq libusb-1.0-0 >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq libusb-1.0-0; }) \
      || echo "warning: could not install libusb-1.0-0; Open3D rendering will be unavailable" >&2
  else
    echo "note: Open3D needs Debian's libusb-1.0-0: run 'sudo apt-get install libusb-1.0-0'" >&2
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
PIP="$VENV/bin/python -m pip --disable-pip-version-check -q"
# pip prints a warning per missing local index entry on some machines: keep only real messages
quiet() { "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }
STAMP="$VENV/.promptfusion-setup"
if [ -f "$STAMP" ] && [ "$STAMP" -nt pyproject.toml ] && [ "$STAMP" -nt scripts/setup.sh ]; then
  exit 0
fi
# torch first, pinned, so nothing later resolves a newer (multi-GB) build; a torch already in the venv
# (e.g. a CUDA build installed on purpose) is kept.
if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
  quiet $PIP install "torch==2.13.0"
fi
# nuscenes-devkit pins numpy<2 and an old shapely; its real needs are in pyproject.toml.
quiet $PIP install --no-deps "nuscenes-devkit==1.2.0"
quiet $PIP install -e ".[ros,dev,export,fleet]"
touch "$STAMP"
