"""What every script shares: one-line errors with exit code 2, and the run's provenance."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .config import ConfigError

EXIT_USAGE = 2


class ArgumentParser(argparse.ArgumentParser):
    """argparse with a one-line usage error (`error: ...`, exit code 2) instead of two."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"error: {message} (see {self.prog} --help)\n")


def run_cli(main: Callable[[Sequence[str] | None], int | None],
            argv: Sequence[str] | None = None) -> int:
    """Run a script's `main`; a ConfigError becomes `error: <line>` and exit code 2."""
    try:
        return int(main(argv) or 0)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def add_data_args(group: Any, *, val_help: str = "to select on") -> None:
    """The data options every training script shares. Real data is the default: a bare command
    that silently trained on generated images would report accuracies of nothing."""
    from .data import DATASETS, DEFAULT_DATA_DIR

    group.add_argument("--data", choices=DATASETS, default="cifar10",
                       help="cifar10/cifar100 (torchvision's files in --data-dir, downloaded "
                            "there when the network allows), imagefolder (--data-dir with "
                            "train/ and val/ or test/, one folder per class), synthetic "
                            "(generated images, for trying the tool) (default: cifar10)")
    group.add_argument("--data-dir", default=DEFAULT_DATA_DIR,
                       help=f"where the data set lies (default: ./{DEFAULT_DATA_DIR})")
    group.add_argument("--val-size", type=int, default=None,
                       help=f"images held out of train {val_help} (default: 5,000, or a tenth "
                            "of a smaller set); the test set is only reported")
    group.add_argument("--train-subset", type=int, default=None,
                       help="train on only this many of the remaining images (quick runs)")
    group.add_argument("--resolution", type=int, default=None,
                       help="resize image folders to this size (default: as stored)")


def git_commit(path: Path | None = None) -> str | None:
    """The commit of the checkout this package runs from, if it is one."""
    where = path or Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def provenance(args: argparse.Namespace | None = None) -> dict[str, Any]:
    """Versions, commit and resolved arguments, written beside every result."""
    import platform

    import torch

    from . import __version__

    info: dict[str, Any] = {
        "ghostsearch": __version__,
        "git_commit": git_commit(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "argv": sys.argv,
    }
    if args is not None:
        info["args"] = {k: v for k, v in vars(args).items() if not callable(v)}
    return info


def markdown(df: Any, **kwargs: Any) -> str:
    """`df.to_markdown(index=False, ...)`, or plain text where tabulate is not installed (as on
    a machine that cannot reach a package registry): a missing table printer must never lose
    the measurements it would have shown."""
    try:
        return df.to_markdown(index=False, **kwargs)
    except ImportError:
        return df.to_string(index=False)
