"""Where the project's own files are, so every command works from any directory.

The configs and the shipped checkpoint live beside the ``perception`` package (the project is installed
editable: ``pip install -e .``). A relative path a user gives is taken from the current directory first;
when nothing is there and the project holds it (``configs/tiny.py``, ``checkpoints/tiny.pth``), the
project's file is used.
"""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = "configs/tiny.py"
DEFAULT_CHECKPOINT = "checkpoints/tiny.pth"


def resolve(path) -> Path:
    """``path`` as given when it exists (or is absolute); else the project's file of that relative name when
    it exists; else ``path`` unchanged (the caller's 'not found' error then names what was given)."""
    p = Path(path)
    if p.is_absolute() or p.exists():
        return p
    q = PROJECT_ROOT / p
    return q if q.exists() else p
