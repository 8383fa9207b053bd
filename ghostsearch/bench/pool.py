"""A process pool for the long benchmark jobs that an interrupt stops at once.

`ProcessPoolExecutor` leaves its `with` block by waiting for the work in flight. A SIGTERM (what
`kill` and job schedulers send, to the command's process only) or Ctrl-C would then wait for a
training of up to an hour. The jobs write one row as each unit finishes and resume from the
file, so the unit in flight can simply be dropped: the workers are terminated instead."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any


@contextlib.contextmanager
def worker_pool(workers: int, initializer: Callable[..., None],
                initargs: tuple[Any, ...]) -> Iterator[ProcessPoolExecutor]:
    """`workers` spawned processes (each its own thread pool); on any exception out of the block
    (KeyboardInterrupt included) they are terminated and nothing more is waited for."""
    pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"),
                               initializer=initializer, initargs=initargs)
    try:
        yield pool
    except BaseException:
        # CPython's executor keeps its worker processes in `_processes` (pid -> Process).
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            process.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
