"""Environment variables set for the duration of a block and restored after it."""

from __future__ import annotations

import os
from contextlib import contextmanager


@contextmanager
def scoped_env(**values: str):
    """``with scoped_env(HF_HUB_OFFLINE="1"): ...``: each variable set inside the block, then restored (or
    removed, if it was not set before)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
