"""The `ghostsearch` command: one subcommand per job. The only layer that parses arguments,
prints, sets logging and turns errors into exit codes."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from .._version import __version__
from .common import EXIT_USAGE, run_cli

COMMANDS = {
    "search": "search architectures for a FLOPs or latency budget (the main job)",
    "confirm": "retrain a search's best and the reference GhostNets over seeds: the verdict",
    "report": "write the report of one or more studies",
    "export": "export a study's best trial, any trial or its Pareto set as configs",
    "supernet": "train a weight-sharing supernet, rank candidates with it, export sub-networks",
    "train": "train a found architecture or a named network to the end, with checkpoints",
    "deploy": "export to ONNX, check it against PyTorch and time it (the deploy extra)",
    "latency": "measure the latency of configs or reference GhostNets",
    "table": "build a latency lookup table for a device",
    "compress": "replace a network's convolutions with Ghost modules and count the savings",
    "count": "count FLOPs and parameters three ways",
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {about}" for name, about in COMMANDS.items()]
    return ("usage: ghostsearch COMMAND [options]   (ghostsearch COMMAND --help for its "
            "options)\n\ncommands:\n" + "\n".join(lines) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage(), end="")
        return 0 if args else EXIT_USAGE
    if args[0] == "--version":
        print(f"ghostsearch {__version__}")
        return 0
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}; choose one of {', '.join(COMMANDS)} "
              "(see ghostsearch --help)", file=sys.stderr)
        return EXIT_USAGE
    module = importlib.import_module(f"{__name__}.{name}")
    return run_cli(module.main, rest)


def entry_point() -> None:
    """The console script: `ghostsearch COMMAND ...`."""
    sys.exit(main())
