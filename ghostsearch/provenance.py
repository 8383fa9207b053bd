"""Versions, commit and arguments, written beside every result so that it can be reproduced."""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any


def git_commit(path: Path | None = None) -> str | None:
    """The commit of the checkout this package runs from, if it runs from one."""
    where = path or Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def provenance(args: argparse.Namespace | None = None) -> dict[str, Any]:
    """Versions, commit and resolved arguments."""
    import torch

    from . import __version__

    info: dict[str, Any] = {
        "ghostsearch": __version__,
        "git_commit": git_commit(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        # the program's name, not where it is installed on this machine
        "argv": [Path(sys.argv[0]).name, *sys.argv[1:]] if sys.argv else [],
    }
    if args is not None:
        info["args"] = {k: v for k, v in vars(args).items() if not callable(v)}
    return info
