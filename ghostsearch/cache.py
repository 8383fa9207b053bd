"""Where ghostsearch keeps what is slow to make and safe to remake (decoded images, exported
ONNX networks): $GHOSTSEARCH_CACHE, else $XDG_CACHE_HOME/ghostsearch or ~/.cache/ghostsearch."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    root = os.environ.get("GHOSTSEARCH_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "ghostsearch")
    return Path(root)
