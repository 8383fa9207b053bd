"""Running a search: trials in this process or in spawned worker processes that share the
study through its storage, with a progress bar and a stop when the trained count is reached."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import optuna
import torch

from ..errors import WorkerError
from ..log import logger
from ..log import restore as restore_log
from ..log import state as log_state
from ..progress import progress_bar, progress_shown, show_progress
from ..train.data import Dataset
from ..train.loop import pick_device
from .estimate import format_duration, remaining_seconds, worker_threads
from .objective import INTERRUPTS, Objective
from .prescreen import ensure_prescreen
from .settings import SearchSettings
from .study import best_feasible, open_study, record_data, take_back_killed, trained_count

# a sampler that keeps proposing over-budget candidates is stopped after this many in a row
MAX_INFEASIBLE_STREAK = 2000


def _stop_callback(settings: SearchSettings, streak: list[int]) -> Callable:
    def callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        streak[0] = 0 if trial.user_attrs.get("decision") != "skip" else streak[0] + 1
        if trained_count(study) >= settings.trials or streak[0] >= MAX_INFEASIBLE_STREAK:
            study.stop()
    return callback


def run_worker(settings: SearchSettings, data: Dataset | None = None, *, device: str | None = None,
               progress: Callable[[optuna.Study, Any], None] | None = None,
               on_epoch: Callable[[int, int, float], None] | None = None,
               deadline: float | None = None, worker: int = 0) -> optuna.Study:
    """Run trials in this process until the study has `settings.trials` trained trials.

    Raises KeyboardInterrupt after Ctrl-C, once the running trial is recorded as interrupted.
    """
    study = open_study(settings, worker)
    take_back_killed(study)  # a worker killed here is retried now, not after the grace period
    if trained_count(study) >= settings.trials:
        return study
    data = data if data is not None else settings.data.load(progress=False)
    record_data(study, data.split_id, data.preprocessing())
    dev = pick_device(device or settings.device)
    streak = [0]
    callbacks = [_stop_callback(settings, streak)]
    if progress is not None:
        callbacks.append(progress)
    timeout = None if deadline is None else max(1.0, deadline - time.time())
    objective = Objective(settings, data, dev, on_epoch)

    def stop_if_interrupted(study: optuna.Study, _trial: Any) -> None:
        if INTERRUPTS.requested:
            objective.interrupted = True
            study.stop()

    with deferred_interrupts():
        study.optimize(objective, timeout=timeout, callbacks=[stop_if_interrupted, *callbacks],
                       catch=(Exception,), gc_after_trial=True)
    if objective.interrupted or INTERRUPTS.requested:
        raise KeyboardInterrupt
    if streak[0] >= MAX_INFEASIBLE_STREAK:
        logger.warning(f"stopped: {MAX_INFEASIBLE_STREAK} over-budget candidates in a row; "
                       "the budget leaves too little of the space (raise --budget or narrow "
                       "the space)")
    return study


def stop_on_sigterm() -> None:
    """Treat SIGTERM (what job schedulers and `kill` send before a kill) like Ctrl-C: the
    running work is saved and the command says how to resume."""
    import signal

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    with contextlib.suppress(ValueError):  # not the main thread (an embedding application)
        signal.signal(signal.SIGTERM, handler)


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """SIGINT and SIGTERM go through `INTERRUPTS` while trials run (see `Interrupts`); the
    previous handlers come back afterwards. Outside the main thread nothing changes."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    INTERRUPTS.requested = INTERRUPTS.inside = False
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in old:
        signal.signal(s, INTERRUPTS.handler)
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def spawn_and_wait(target: Callable[..., None], args: list[tuple], what: str,
                   poll: Callable[[], None] | None = None, every: float = 2.0) -> None:
    """Run `target(*a)` for each `a` in its own spawned process (its own CUDA context and
    thread pool) and wait for all, calling `poll` every `every` seconds meanwhile.

    Waits on Ctrl-C too, since the processes got it as well and save before leaving; raises
    WorkerError when any of them exited non-zero.
    """
    ctx = mp.get_context("spawn")
    saved = {"log": log_state(), "progress": progress_shown()}
    procs = [ctx.Process(target=_as_parent, args=(target, saved, *a)) for a in args]
    for p in procs:
        p.start()
    try:
        while poll is not None and any(p.is_alive() for p in procs):
            poll()
            time.sleep(every)
    except KeyboardInterrupt:
        # Ctrl-C in a terminal reaches the whole process group; a SIGTERM sent to this
        # process alone does not, so pass the interrupt on: each worker saves and leaves
        for p in procs:
            if p.is_alive() and p.pid is not None:
                os.kill(p.pid, signal.SIGINT)
        raise
    finally:
        for p in procs:
            p.join()
    failed = [p.exitcode for p in procs if p.exitcode != 0]
    if failed:
        raise WorkerError(f"{len(failed)} of {len(procs)} {what} exited with codes {failed}; "
                          "their messages are above")


def _as_parent(target: Callable[..., None], saved: dict[str, Any], *args: Any) -> None:
    """In a spawned process: log and show progress as the parent does, then run `target`."""
    restore_log(saved["log"])
    show_progress(saved["progress"])
    target(*args)


def _spawned_worker(settings: SearchSettings, device: str, deadline: float | None,
                    worker: int, verbosity: int) -> None:
    # Ctrl-C reaches every worker at once, whatever it is doing (even setting up): the
    # parent reports it, so no worker prints a traceback of its own
    try:
        stop_on_sigterm()
        optuna.logging.set_verbosity(verbosity)  # the parent's, as its command line set it
        dev = pick_device(device)
        if dev.type == "cpu":  # K workers share the cores instead of each taking all
            torch.set_num_threads(worker_threads(settings.n_jobs))
        elif dev.index is not None:  # graphs, events and caches on this worker's own GPU only
            torch.cuda.set_device(dev)
        run_worker(settings, device=device, deadline=deadline, worker=worker)
    except KeyboardInterrupt:
        return


def run_trials(settings: SearchSettings, data: Dataset | None = None, *,
               devices: list[str] | None = None, show_progress: bool = True) -> optuna.Study:
    """Train trials until `settings.trials` are trained (or the timeout), resuming a stored
    study (`ghostsearch.run_search` is the whole search: data, estimate, report, export).

    With n_jobs > 1, that many worker processes share the study through its storage (each with
    its own CUDA context), spread round-robin over `devices`; this process loads the data
    first, so that bad data is refused once, before any worker starts, and shows progress.
    """

    study = open_study(settings)
    if data is None and trained_count(study) < settings.trials:
        data = settings.data.load()  # the workers then read the decoded cache
    if data is not None:
        # once per study, before any worker starts
        ensure_prescreen(study, settings, data, progress=show_progress)
    deadline = None if settings.timeout is None else time.time() + settings.timeout
    bar = progress_bar(total=settings.trials, desc="trials", unit="trial",
                       disable=not show_progress, dynamic_ncols=True,
                       initial=min(trained_count(study), settings.trials))

    def describe(study: optuna.Study) -> dict[str, str]:
        best = best_feasible(study)
        out = {"best_val": f"{best.user_attrs['val_acc']:.2f}%" if best else "-"}
        left = remaining_seconds(study, settings)
        if left is not None:
            out["eta"] = format_duration(left)
        return out

    announced = [False]

    def progress(study: optuna.Study, _trial: Any) -> None:
        bar.n = min(trained_count(study), settings.trials)
        bar.set_postfix(describe(study), refresh=True)
        left = remaining_seconds(study, settings)
        if left is not None and not announced[0] and show_progress:
            announced[0] = True
            logger.info(f"first trial trained: about {format_duration(left)} left for the "
                        f"remaining {max(0, settings.trials - trained_count(study))} trials")

    def on_epoch(number: int, epoch: int, acc: float) -> None:
        bar.set_postfix({**describe(study), "trial": number,
                         "epoch": f"{epoch + 1}/{settings.protocol.epochs}",
                         "val": f"{acc:.2f}%"}, refresh=True)

    try:
        if settings.n_jobs == 1:
            device = (devices or [settings.device])[0]
            run_worker(settings, data, device=device, progress=progress, on_epoch=on_epoch,
                       deadline=deadline)
        else:
            devices = devices or [settings.device]
            verbosity = optuna.logging.get_verbosity()
            spawn_and_wait(_spawned_worker,
                           [(settings, devices[i % len(devices)], deadline, i + 1, verbosity)
                            for i in range(settings.n_jobs)],
                           "worker processes", poll=lambda: progress(study, None))
        progress(study, None)
    finally:
        bar.close()
    return study
