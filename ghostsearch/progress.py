"""Progress bars that suit where the output goes: tqdm's bar in a terminal; without one
(nohup, a CI log, a file) a plain line at most every `interval` seconds and a last line at the
end, instead of a carriage-return frame at every refresh.

Bars are off in the library until `show_progress(True)` (the command line turns them on):
one switch, so that a program using ghostsearch gets no bars it did not ask for."""

from __future__ import annotations

import sys
import time
from typing import Any

from tqdm import tqdm

LOG_INTERVAL_S = 30.0
_SHOWN = False


def show_progress(on: bool = True) -> None:
    """Turn every progress bar of the library on or off (off by default)."""
    global _SHOWN
    _SHOWN = bool(on)


def progress_shown() -> bool:
    return _SHOWN


class LineBar(tqdm):
    """tqdm that writes whole lines, at most one per `interval` seconds, and the final state."""

    def __init__(self, *args: Any, interval: float = LOG_INTERVAL_S, **kwargs: Any) -> None:
        self._interval = interval
        self._last_line = -float("inf")
        self._last_text = ""
        self._done_written = False
        kwargs["dynamic_ncols"] = False
        kwargs.setdefault("ncols", 100)
        kwargs.setdefault("ascii", True)
        super().__init__(*args, **kwargs)

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        now = time.monotonic()
        done = self.total is not None and self.n >= self.total
        if done and self._done_written:
            return True
        if not done and now - self._last_line < self._interval:
            return True
        self._done_written = done
        text = (msg or self.__str__()).strip()
        if text and text != self._last_text and self.fp is not None:
            self.fp.write(text + "\n")
            self.fp.flush()
            self._last_text = text
            self._last_line = now
        return True

    def close(self) -> None:
        if not self.disable and not self._done_written:
            self._last_line = -float("inf")
            self.display()
        self.disable = True  # tqdm's own close would draw the bar once more
        super().close()


def progress_bar(*args: Any, interactive: bool | None = None, **kwargs: Any) -> tqdm:
    """A tqdm bar in a terminal, else a `LineBar` (see the module docstring); disabled
    unless `show_progress` turned bars on."""
    kwargs["disable"] = bool(kwargs.get("disable", False)) or not _SHOWN
    file = kwargs.get("file") or sys.stderr
    if interactive is None:
        interactive = bool(getattr(file, "isatty", lambda: False)())
    return tqdm(*args, **kwargs) if interactive else LineBar(*args, **kwargs)
