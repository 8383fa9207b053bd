"""The library's one logger. ghostsearch never prints: it logs lines to the `ghostsearch`
logger (silent unless the application gives it a handler), and the command line sends them
to stdout with `to_stdout`. Spawned workers take the parent's setting through `state` and
`restore`, so a unit's progress lines reach the same output whichever process trains it."""

from __future__ import annotations

import logging
import sys
from typing import Any

logger = logging.getLogger("ghostsearch")
logger.addHandler(logging.NullHandler())

_HANDLER_NAME = "ghostsearch-stdout"


class _Flushing(logging.StreamHandler):
    """The stdout of the moment (a caller may swap it), flushed after every line: workers
    share one stdout, often a file (nohup, CI)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stdout
        super().emit(record)
        self.flush()


def to_stdout(level: int = logging.INFO) -> None:
    """Send the library's lines to stdout as plain text (what the commands do); idempotent."""
    if not any(h.get_name() == _HANDLER_NAME for h in logger.handlers):
        handler = _Flushing(sys.stdout)
        handler.set_name(_HANDLER_NAME)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(level)
    logger.disabled = False  # a logging.config call elsewhere may have disabled it


def state() -> dict[str, Any]:
    """What a spawned worker needs to log as this process does."""
    return {"stdout": any(h.get_name() == _HANDLER_NAME for h in logger.handlers),
            "level": logger.level}


def restore(saved: dict[str, Any]) -> None:
    """In a spawned worker: log as the parent whose `state()` this is."""
    if saved.get("stdout"):
        to_stdout(saved.get("level") or logging.INFO)
