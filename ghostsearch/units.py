"""The unit runner: (key, seed) units of training on an Optuna study used as a queue, trained
exactly once by however many workers, on however many machines, share the study's storage.

confirm and the ground truth both run their units here. A unit is one trial: queued WAITING,
popped by `ask` (one worker gets it), told COMPLETE with its record. A worker that dies
leaves its unit RUNNING; it is taken back and queued again (it resumes from its checkpoint):

- at once, when the worker ran on this machine and its process is gone (`worker_gone`: even
  SIGKILL, which no handler sees);
- on a storage with Optuna's heartbeat (every RDB storage `search.storage.make_storage`
  opens), by Optuna's own rule: a thread records a heartbeat in the storage while the unit
  trains, and `optuna.storages.fail_stale_trials` fails a unit whose last heartbeat, by the
  storage's clock, is older than the storage's grace period (then its retry callback queues
  it again). A long epoch is never mistaken for a lost worker, and no two machines' clocks
  are compared;
- on a storage without it (journal files), when the unit's last beat (an aware UTC time, set
  every `BEAT_EVERY_S` between steps) is older than the stale time.

The search's trials, which a sampler proposes instead of a queue, keep the same record of
their worker (`mark_worker`) and are taken back by the same rule (`fail_gone`).

A unit that failed (an error, or a lost worker) is queued again until it has failed
`MAX_RETRIES` + 1 times; an interrupt (Ctrl-C, SIGTERM) queues it again without counting. The
record of a finished unit (its trial's attributes and whatever `on_done` writes: a CSV row,
the reference bank) is made with interrupts held, so it is made whole or not at all.
"""

from __future__ import annotations

import contextlib
import datetime
import math
import os
import signal
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import optuna
from optuna.trial import TrialState

from .log import logger

MAX_RETRIES = 2  # a unit that failed this many times more is left failed, with its reasons
STALE_AFTER_S = 900.0  # without Optuna's heartbeat: a RUNNING unit silent this long is lost
BEAT_EVERY_S = 60.0  # without it: a training unit beats this often (between steps)

Unit = tuple[str, int]  # (key, seed)
Beat = Callable[[str], None]  # a line of the unit's progress; raises TakenElsewhere
StepBeat = Callable[[int], None]  # called after every optimiser step
Trainer = Callable[[str, int, Beat, StepBeat], dict[str, Any]]


class TakenElsewhere(Exception):
    """Another worker finished this unit's trial first: SQLite can hand one WAITING trial to
    two processes that ask at the same moment (both read it before either writes)."""


def _say(line: str) -> None:
    logger.info(line)


def unit_of(trial: optuna.trial.FrozenTrial | optuna.Trial) -> Unit | None:
    attrs = trial.user_attrs
    return (attrs["key"], attrs["seed"]) if "key" in attrs else None


def queue(study: optuna.Study, key: str, seed: int, number: int, **attrs: Any) -> None:
    """Queue one unit (`number`: its place in the confirmation's or table's order)."""
    study.enqueue_trial({"unit": number}, user_attrs={"key": key, "seed": seed, **attrs})


def add_finished(study: optuna.Study, key: str, seed: int, number: int, value: float,
                 **attrs: Any) -> None:
    """Add a unit as finished, nothing trained (a run the reference bank holds)."""
    study.add_trial(optuna.trial.create_trial(
        params={"unit": number},
        distributions={"unit": optuna.distributions.IntDistribution(0, max(number, 1))},
        value=value, user_attrs={"key": key, "seed": seed, **attrs}))


def failures(study: optuna.Study, unit: Unit) -> int:
    """How often `unit` failed (an error or a lost worker; interrupts are not counted)."""
    return sum(1 for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
               if unit_of(t) == unit and not t.user_attrs.get("interrupted"))


def requeue_lost(study: optuna.Study) -> int:
    """Queue again every unit that failed and has no trial finished, waiting or running,
    unless it failed more than `MAX_RETRIES` + 1 times; the new trial carries the reason its
    last predecessor failed. Returns how many were queued."""
    trials = [t for t in study.get_trials(deepcopy=False) if unit_of(t) is not None]
    alive = {unit_of(t) for t in trials
             if t.state in (TrialState.COMPLETE, TrialState.WAITING, TrialState.RUNNING)}
    n = 0
    for unit in dict.fromkeys(unit_of(t) for t in trials if t.state == TrialState.FAIL):
        if unit in alive:
            continue
        failed = [t for t in trials if unit_of(t) == unit and t.state == TrialState.FAIL]
        counted = sum(1 for t in failed if not t.user_attrs.get("interrupted"))
        if counted > MAX_RETRIES:
            continue
        last = failed[-1]
        queue(study, *unit, int(last.params.get("unit", 0)), retries=counted,
              previous_failure=last.user_attrs.get("reason", ""))
        alive.add(unit)
        n += 1
    return n


def _utc(moment: datetime.datetime | str | None) -> datetime.datetime | None:
    """A beat or a trial's start as an aware UTC time (a naive one is this machine's local
    time: beats written before they carried a zone, and Optuna's own timestamps)."""
    if moment is None:
        return None
    if isinstance(moment, str):
        moment = datetime.datetime.fromisoformat(moment)
    return moment.astimezone(datetime.timezone.utc)


def now_utc() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


def pid_alive(pid: int) -> bool:
    """Whether a process `pid` runs on this machine (signal 0 tests without sending)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def mark_worker(trial: optuna.Trial) -> None:
    """Record which process runs `trial` (host, pid, and the trial it was recorded for: a
    retry made by Optuna's callback copies its predecessor's attributes, and a copied pid is
    not this trial's worker)."""
    trial.set_user_attr("host", socket.gethostname())
    trial.set_user_attr("pid", os.getpid())
    trial.set_user_attr("pid_trial", trial.number)


def worker_gone(trial: optuna.trial.FrozenTrial) -> bool:
    """A trial's worker ran on this machine and its process no longer exists: killed (even by
    SIGKILL, which no handler sees), so the trial can be taken back at once."""
    attrs = trial.user_attrs
    host, pid = attrs.get("host"), attrs.get("pid")
    if host != socket.gethostname() or not isinstance(pid, int) or pid == os.getpid():
        return False
    if attrs.get("pid_trial", trial.number) != trial.number:  # copied: not yet its own
        return False
    return not pid_alive(pid)


def _fail(study: optuna.Study, trial: optuna.trial.FrozenTrial, reason: str | None) -> bool:
    """Fail another process's RUNNING trial, first recording `reason`; False when another
    process finished it first."""
    with warnings.catch_warnings():  # telling another process's trial is the point here
        warnings.simplefilter("ignore", UserWarning)
        try:
            if reason is not None:
                study._storage.set_trial_user_attr(trial._trial_id, "reason", reason)
            study.tell(trial.number, state=TrialState.FAIL)
        except (optuna.exceptions.UpdateFinishedTrialError, ValueError):
            return False  # finished meanwhile (ValueError: tell read it finished already)
    return True


def fail_gone(study: optuna.Study, select: Callable[[optuna.trial.FrozenTrial], bool],
              ) -> list[optuna.trial.FrozenTrial]:
    """Fail every RUNNING trial chosen by `select` whose worker on this machine is gone, with
    no reason recorded (as Optuna's heartbeat fails a trial); returns those this call
    failed."""
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if select(t) and worker_gone(t) and _fail(study, t, None)]


def heartbeat_storage(study: optuna.Study) -> optuna.storages.BaseStorage | None:
    """The study's storage when it keeps Optuna's heartbeat, else None. (Optuna's own
    `fail_stale_trials` reads the study's storage the same way.)"""
    storage = getattr(study, "_storage", None)
    interval = getattr(storage, "get_heartbeat_interval", lambda: None)()
    return storage if interval is not None else None


@contextlib.contextmanager
def heartbeat(study: optuna.Study, trial: optuna.Trial) -> Iterator[None]:
    """Record Optuna's heartbeat of `trial` in the study's storage, from a thread, every
    heartbeat interval while the block runs (what `Study.optimize` does for its trials); a
    no-op on a storage without the heartbeat."""
    storage = heartbeat_storage(study)
    if storage is None:
        yield
        return
    stop = threading.Event()
    interval = storage.get_heartbeat_interval()

    def beat() -> None:
        while True:
            with contextlib.suppress(Exception):  # a busy database: the next beat retries
                storage.record_heartbeat(trial._trial_id)
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, name=f"heartbeat-{trial.number}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def reclaim(study: optuna.Study, stale_after_s: float = STALE_AFTER_S,
            log: Callable[[str], None] | None = None) -> int:
    """Take back units left RUNNING by a worker that died (killed, out of memory), by the
    rules of the module docstring, and queue them again (each resumes from its checkpoint).
    Returns how many were taken back."""
    now = datetime.datetime.now(datetime.timezone.utc)
    hb = heartbeat_storage(study) is not None
    n = 0
    running = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
               if unit_of(t) is not None]
    for t in running:
        if worker_gone(t):
            reason = (f"its worker (pid {t.user_attrs['pid']} on this machine) is gone "
                      "(killed)")
        elif not hb:
            last = _utc(t.user_attrs.get("alive_at")) or _utc(t.datetime_start)
            silent = (now - last).total_seconds() if last is not None else math.inf
            if silent < stale_after_s:
                continue
            reason = f"stale: no beat for {silent:.0f} s (worker lost)"
        else:
            continue
        if not _fail(study, t, reason):
            continue
        n += 1
        if log is not None:
            log(f"{t.user_attrs['key']}, seed {t.user_attrs['seed']}: taken back ({reason})")
    if hb:
        before = {t.number for t in running}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
            if t.number in before and not (t.user_attrs.get("reason")
                                           or t.user_attrs.get("interrupted")):
                n += 1
                if log is not None:
                    log(f"{t.user_attrs['key']}, seed {t.user_attrs['seed']}: taken back "
                        "(stale: no heartbeat within the storage's grace period)")
    requeue_lost(study)
    return n


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM while the block runs (recording a finished unit), then act on
    them: an interrupt never leaves a trained unit RUNNING with its result unrecorded.
    Outside the main thread, a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    old = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in old:
        signal.signal(sig, lambda signum, frame: held.append(signum))
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        if held:
            handler = old[held[0]]
            if callable(handler):
                handler(held[0], None)
            raise KeyboardInterrupt


def unit_count(study: optuna.Study) -> int:
    """How many (key, seed) units the study holds: a unit's number runs below it."""
    return len({unit_of(t) for t in study.get_trials(deepcopy=False)} - {None})


def finished(study: optuna.Study) -> dict[Unit, optuna.trial.FrozenTrial]:
    """The first COMPLETE trial of each unit (a unit finished twice, by a worker thought
    lost, counts once: its first result)."""
    out: dict[Unit, optuna.trial.FrozenTrial] = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if (unit := unit_of(t)) is not None:
            out.setdefault(unit, t)
    return out


def unfinished(study: optuna.Study) -> list[Unit]:
    """Units queued or running but not finished (and not failed for good)."""
    live = (TrialState.WAITING, TrialState.RUNNING)
    return sorted({unit_of(t) for t in study.get_trials(deepcopy=False, states=live)}
                  - {None} - set(finished(study)))


def run(study: optuna.Study, train: Trainer,
        on_done: Callable[[Unit, dict[str, Any]], None] | None = None,
        done: Callable[[], set[Unit]] | None = None, keep: tuple[str, ...] = (),
        log: Callable[[str], None] = _say, stale_after_s: float = STALE_AFTER_S) -> int:
    """Train waiting units until none is left; returns how many this call finished.

    `train(key, seed, beat, step_beat)` trains one unit and returns its record (with
    `val_acc`, the trial's value); the record's `keep` fields become the trial's attributes
    and `on_done(unit, record)` stores the rest, both with interrupts held. `done()` (default:
    the study's finished units) says which units are finished already: a unit popped after it
    finished elsewhere is not trained again. `log` gets a line as a unit starts, each line
    its trainer beats with, and when it is done."""
    done = done or (lambda: set(finished(study)))
    reclaim(study, stale_after_s, log)
    n_done = 0
    while study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        with warnings.catch_warnings():  # ask/tell on a heartbeat storage: `heartbeat` beats
            warnings.simplefilter("ignore", UserWarning)
            trial = study.ask()
        if unit_of(trial) is None:  # another worker took the last unit
            study.tell(trial, state=TrialState.PRUNED)
            break
        n_units = unit_count(study)
        number = trial.suggest_int("unit", 0, max(0, n_units - 1))
        key, seed = unit_of(trial)
        if (key, seed) in done():
            study.tell(trial, state=TrialState.PRUNED)  # done meanwhile
            continue
        retries = int(trial.user_attrs.get("retries", 0))
        tag = f"unit {number + 1}/{n_units}: {key}, seed {seed}"
        log(f"{tag}: started" + (f" (retry {retries})" if retries else ""))

        def beat(message: str, tag: str = tag, trial: optuna.Trial = trial) -> None:
            try:
                trial.set_user_attr("alive_at", now_utc())
            except optuna.exceptions.UpdateFinishedTrialError:
                raise TakenElsewhere from None
            log(f"{tag}: {message}")

        last_beat = [time.monotonic()]

        def step_beat(step: int, trial: optuna.Trial = trial, last: list = last_beat) -> None:
            if time.monotonic() - last[0] >= BEAT_EVERY_S:
                last[0] = time.monotonic()
                try:
                    trial.set_user_attr("alive_at", now_utc())
                except optuna.exceptions.UpdateFinishedTrialError:
                    raise TakenElsewhere from None

        mark_worker(trial)
        try:
            with heartbeat(study, trial):
                beat("training")
                record = train(key, seed, beat, step_beat)
        except (TakenElsewhere, optuna.exceptions.UpdateFinishedTrialError):
            log(f"{tag}: finished by another worker; dropped here")
            continue
        except KeyboardInterrupt:
            with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                trial.set_user_attr("interrupted", True)
            study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            queue(study, key, seed, number, retries=retries)
            raise
        except Exception as e:  # out of memory, a diverged run, a bad file: recorded, retried
            reason = f"{type(e).__name__}: {(str(e).splitlines() or [''])[0]}"[:300]
            with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                trial.set_user_attr("reason", reason)
            study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            again = failures(study, (key, seed)) <= MAX_RETRIES
            requeue_lost(study)
            log(f"{tag}: failed ({reason}); " + ("queued again" if again else
                                                 f"given up after {retries + 1} tries"))
            continue
        with deferred_interrupts():  # a finished unit is recorded whole, or not at all
            try:
                for k in keep:
                    if k in record:
                        trial.set_user_attr(k, record[k])
            except optuna.exceptions.UpdateFinishedTrialError:
                log(f"{tag}: finished by another worker; dropped here")
                continue
            study.tell(trial, record["val_acc"], skip_if_finished=True)
            if on_done is not None:
                on_done((key, seed), record)
        n_done += 1
        log(f"{tag}: done, val {record['val_acc']:.2f}%, test {record['test_acc']:.2f}%, "
            f"{record['train_seconds'] / 60:.1f} min")
    return n_done
