"""What every command shares: one-line errors with exit code 2 and no traceback, the data
options, and Optuna's log level (set here, never by the library)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .. import log
from ..errors import ConfigError, GhostsearchError, WorkerError
from ..progress import show_progress
from ..search.workers import stop_on_sigterm
from ..train.data import DATASETS, DEFAULT_DATA_DIR, DEFAULT_MAX_DATA_GB, load_data
from ..train.recipe import load_recipe, recipe_names

EXIT_USAGE = 2


class ArgumentParser(argparse.ArgumentParser):
    """argparse with a one-line usage error (`error: ...`, exit code 2) instead of two."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"error: {message} (see {self.prog} --help)\n")


def run_cli(main: Callable[[Sequence[str] | None], int | None],
            argv: Sequence[str] | None = None) -> int:
    """Run a script's `main`; a ConfigError becomes `error: <line>` and exit code 2."""
    quiet_libraries()
    log.to_stdout()  # the library's lines are this command's output
    show_progress(True)
    stop_on_sigterm()
    try:
        return int(main(argv) or 0)
    except WorkerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except GhostsearchError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def quiet_libraries() -> None:
    """Optuna logs every trial at INFO; the commands print their own progress instead."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


def add_data_args(group: Any, *, val_help: str = "to select on") -> None:
    """The data options every training command shares. Real data is the default: a bare
    command that silently trained on generated images would report accuracies of nothing."""

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
    group.add_argument("--split-seed", type=int, default=0,
                       help="picks the held-out validation images; studies compared in one "
                            "report must share it (default: 0)")
    group.add_argument("--max-data-gb", type=float, default=DEFAULT_MAX_DATA_GB,
                       help="refuse an image folder whose decoded images exceed this many GB "
                            f"(they are held in memory) (default: {DEFAULT_MAX_DATA_GB:g})")


def load_data_args(args: Any) -> Any:
    """The Dataset that the options of `add_data_args` describe, its summary printed."""

    data = load_data(args.data, args.data_dir, val_size=args.val_size,
                     train_subset=args.train_subset, resolution=args.resolution,
                     seed=args.split_seed, max_data_gb=args.max_data_gb)
    print(data.summary(), flush=True)
    return data


RECIPE_FLAGS = ("epochs", "batch_size", "lr", "schedule", "warmup", "weight_decay",
                "label_smoothing")


def add_recipe_arg(group: Any, default_text: str) -> None:
    """`--recipe NAME|FILE`: a named recipe or a user's YAML/JSON file of recipe fields."""

    group.add_argument("--recipe", default=None, metavar="NAME|FILE",
                       help=f"the training recipe: a named one ({', '.join(recipe_names())}) "
                            "or a YAML/JSON file of recipe fields (docs/recipes.md); the "
                            f"flags below override its fields (default: {default_text})")


def recipe_from_args(args: Any, base: Any) -> Any:
    """`--recipe` (else `base`), with every recipe flag the command line gave put over it."""
    import dataclasses


    recipe = load_recipe(args.recipe) if getattr(args, "recipe", None) else base
    given = {f: getattr(args, f) for f in RECIPE_FLAGS if getattr(args, f, None) is not None}
    try:
        return dataclasses.replace(recipe, **given) if given else recipe
    except ConfigError as e:  # name the flag the user typed, not the recipe field
        for f, v in given.items():
            marker = f"{f}={v!r}: "
            if marker in str(e):
                why = str(e).split(marker, 1)[1]
                raise ConfigError(f"--{f.replace('_', '-')} {v}: {why}") from None
        raise
