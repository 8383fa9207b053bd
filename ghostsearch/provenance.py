"""Versions, commit and arguments, written beside every result so that it can be reproduced."""

from __future__ import annotations

import argparse
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from ._version import __version__


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


def runtime_info(device: Any = "cpu") -> dict[str, Any]:
    """What ran a unit: versions, commit, host, device and its threads (beside its figures)."""
    import torch

    return {"ghostsearch": __version__, "git_commit": git_commit(), "torch": torch.__version__,
            "python": platform.python_version(), "host": socket.gethostname(),
            "device": str(device), "threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine()}


def write_atomic(path: str | Path, text: str) -> Path:
    """Write `text` to `path` so that a kill at any moment leaves the old file or the new one,
    never a broken one: a temporary file beside it, flushed to disk, then renamed."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    return path
