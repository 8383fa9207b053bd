"""The unit runner (ghostsearch.units): exactly once under lost workers, Optuna's heartbeat on
RDB storages, retries, interrupts. Trainers here are stand-ins: no network is trained."""

from __future__ import annotations

import threading
import time

import optuna
import pytest
from optuna.trial import TrialState

import ghostsearch.units as units
from ghostsearch.search.storage import make_storage


def rdb(tmp_path, interval: int = 1, grace: int = 1) -> optuna.storages.RDBStorage:
    """An SQLite storage with Optuna's heartbeat and the search's retry callback."""
    return optuna.storages.RDBStorage(
        f"sqlite:///{tmp_path / 'u.db'}", heartbeat_interval=interval, grace_period=grace,
        heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
            max_retry=1))


def record(value: float = 50.0) -> dict:
    return {"val_acc": value, "test_acc": value - 1, "train_seconds": 0.1}


def orphan(study: optuna.Study, host: str = "another-machine") -> optuna.Trial:
    """Pop the next unit as a worker elsewhere would, and leave it RUNNING."""
    import warnings

    with warnings.catch_warnings():  # ask on a heartbeat storage, as the runner does
        warnings.simplefilter("ignore", UserWarning)
        t = study.ask()
    t.suggest_int("unit", 0, 9)
    t.set_user_attr("host", host)
    t.set_user_attr("pid", 1)
    return t


def orphan_of_a_dead_worker(tmp_path) -> tuple[optuna.Study, optuna.Trial, int]:
    """A unit left RUNNING by a process of this machine that has exited (its pid)."""
    import socket
    import subprocess

    proc = subprocess.Popen(["true"])
    proc.wait()
    study = optuna.create_study(study_name="u", storage=f"sqlite:///{tmp_path / 'd.db'}")
    units.queue(study, "a", 0, 0)
    t = orphan(study, host=socket.gethostname())
    t.set_user_attr("pid", proc.pid)
    return study, t, proc.pid


def test_a_unit_longer_than_the_grace_period_keeps_beating_and_trains_once(tmp_path):
    """On a heartbeat storage the unit beats from a thread, whatever the trainer does: a
    unit that runs two grace periods without a single step is never taken back by a worker
    that looks meanwhile."""
    study = optuna.create_study(study_name="u", storage=rdb(tmp_path, 1, 2))
    units.queue(study, "a", 0, 0)
    seen, calls = [], []

    def look() -> None:  # another worker, with its own connection, looks for lost units
        other = optuna.load_study(study_name="u", storage=rdb(tmp_path, 1, 2))
        for _ in range(4):
            time.sleep(1.0)
            seen.append(units.reclaim(other, stale_after_s=0.1))

    def slow(key, seed, beat, step_beat):
        calls.append((key, seed))
        looker = threading.Thread(target=look)
        looker.start()
        looker.join()  # 4 s: two grace periods with no step and no beat of its own
        return record()

    assert units.run(study, slow, log=lambda m: None) == 1
    assert seen == [0, 0, 0, 0] and calls == [("a", 0)]
    assert [t.state for t in study.get_trials()] == [TrialState.COMPLETE]


def test_a_silent_unit_on_a_heartbeat_storage_is_failed_by_optuna_and_trained_once(tmp_path):
    """A worker elsewhere beat once and went silent: after the storage's grace period, by
    the storage's clock, Optuna fails the unit and its retry callback queues it; killed a
    second time, past the callback's one retry, the runner queues it again; a rerun trains
    it once."""
    storage = rdb(tmp_path)
    study = optuna.create_study(study_name="u", storage=storage)
    units.queue(study, "a", 0, 0)
    said: list[str] = []
    for _ in range(2):  # killed twice
        t = orphan(study)
        storage.record_heartbeat(t._trial_id)
        time.sleep(2.2)  # SQLite's clock counts whole seconds: 2 > the grace period
        assert units.reclaim(study, log=said.append) == 1
        assert units.unfinished(study) == [("a", 0)]
    units.queue(study, "b", 0, 1)
    assert sum("no heartbeat within the storage's grace period" in line for line in said) == 2
    calls = []
    units.run(study, lambda k, s, beat, step: calls.append((k, s)) or record(),
              log=lambda m: None)
    assert sorted(calls) == [("a", 0), ("b", 0)]
    assert sorted(units.finished(study)) == [("a", 0), ("b", 0)]
    assert units.failures(study, ("a", 0)) == 2


def test_a_unit_whose_worker_here_is_gone_is_taken_back_at_once(tmp_path):
    """A worker of this machine whose process no longer exists (SIGKILL) loses its unit at
    once, on any storage, without waiting for a stale time."""
    study, t, pid = orphan_of_a_dead_worker(tmp_path)
    t.set_user_attr("alive_at", units.now_utc())  # beat just now: not stale
    said: list[str] = []
    assert units.reclaim(study, stale_after_s=3600, log=said.append) == 1
    assert f"pid {pid} on this machine) is gone" in said[0]
    assert units.unfinished(study) == [("a", 0)]


def test_a_pid_copied_from_a_predecessor_is_not_taken_for_the_trials_own_worker(tmp_path):
    """Optuna's retry callback copies a killed trial's attributes into its retry: until the
    retry's worker records itself, the dead predecessor's pid must not fail the retry."""
    study, t, pid = orphan_of_a_dead_worker(tmp_path)
    t.set_user_attr("pid_trial", t.number + 1)  # recorded for another trial
    assert units.fail_gone(study, lambda t: True) == []
    assert study.trials[0].state == TrialState.RUNNING
    units.mark_worker(t)  # its own worker records itself: this process, alive
    assert units.fail_gone(study, lambda t: True) == []
    t.set_user_attr("pid", pid)  # now this trial's own worker, and it is gone
    seen_running = study.trials[0]  # what a second rerun, looking at the same moment, read
    assert [g.number for g in units.fail_gone(study, lambda t: True)] == [t.number]
    assert not units._fail(study, seen_running, None)  # the second rerun fails it no more
    assert not units._fail(study, seen_running, "a reason")
    assert study.trials[0].state == TrialState.FAIL and "reason" not in study.trials[0].user_attrs


def test_a_failing_unit_is_given_up_after_its_retries_and_an_interrupt_is_not_counted(
        tmp_path):
    study = optuna.create_study(study_name="u", storage=f"sqlite:///{tmp_path / 'f.db'}")
    units.queue(study, "a", 0, 0)
    tries = []

    def interrupted(key, seed, beat, step):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        units.run(study, interrupted, log=lambda m: None)
    assert units.failures(study, ("a", 0)) == 0 and units.unfinished(study) == [("a", 0)]

    def broken(key, seed, beat, step):
        tries.append(1)
        raise RuntimeError("diverged\nsecond line")

    said: list[str] = []
    assert units.run(study, broken, log=said.append) == 0
    assert len(tries) == units.MAX_RETRIES + 1
    assert said[-1].endswith(f"failed (RuntimeError: diverged); given up after "
                             f"{units.MAX_RETRIES + 1} tries")
    assert units.unfinished(study) == [] and units.finished(study) == {}
    retried = [t for t in study.get_trials() if t.user_attrs.get("retries")]
    assert [t.user_attrs["previous_failure"] for t in retried] == ["RuntimeError: diverged"] * 2


def test_a_unit_popped_after_it_finished_elsewhere_is_not_trained(tmp_path):
    study = optuna.create_study(study_name="u", storage=f"sqlite:///{tmp_path / 'd.db'}")
    units.queue(study, "a", 0, 0)
    units.queue(study, "b", 0, 1)
    calls = []
    units.run(study, lambda k, s, beat, step: calls.append(k) or record(),
              done=lambda: {("a", 0)}, log=lambda m: None)
    assert calls == ["b"]
    assert [t.state for t in study.get_trials()] == [TrialState.PRUNED, TrialState.COMPLETE]


def test_a_ground_truth_worker_killed_mid_unit_is_taken_back_by_a_rerun(tmp_path):
    """SIGKILL of the ground truth's worker process mid-unit stops the invocation; an
    immediate rerun takes the unit back at once (its worker here is gone), and every unit
    of the table is trained and written exactly once."""
    import csv
    import json
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    out = tmp_path / "gt"
    args = [sys.executable, str(root / "scripts" / "build_ground_truth.py"), "--data",
            "synthetic", "--data-dir", str(tmp_path), "--out", str(out), "--budget",
            "100MFLOPs", "--archs", "1", "--second-seed", "0", "--epochs", "8",
            "--train-subset", "64", "--val-size", "32", "--workers", "1"]
    env = {**os.environ, "GHOSTSEARCH_CACHE": str(tmp_path / "cache")}
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    deadline, victim = time.time() + 300, None
    while time.time() < deadline and victim is None:
        time.sleep(0.3)
        if not (out / "units.db").exists():
            continue
        try:  # make_storage waits out the command creating the database's tables
            study = optuna.load_study(study_name="ground-truth-units",
                                      storage=make_storage(f"sqlite:///{out / 'units.db'}"))
        except KeyError:
            continue
        running = study.get_trials(states=(TrialState.RUNNING,))
        if running and "pid" in running[0].user_attrs:
            victim = running[0].user_attrs["pid"]
    assert victim is not None and victim != proc.pid  # a pool worker, not the command
    os.kill(victim, signal.SIGKILL)
    proc.communicate(timeout=120)
    assert proc.returncode != 0
    r = subprocess.run(args, capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader((out / "runs.csv").open()))
    keys = [(row["arch_id"], row["seed"]) for row in rows]
    planned = {(u["arch_id"], str(u["seed"]))
               for u in json.loads((out / "protocol.json").read_text())["units"]}
    assert len(keys) == len(set(keys)) and set(keys) == planned  # every unit, each once
    trials = study.get_trials()
    done = [units.unit_of(t) for t in trials if t.state == TrialState.COMPLETE]
    assert sorted(done) == sorted((a, int(s)) for a, s in keys)
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(failed) == 1 and f"pid {victim} on this machine" in failed[0].user_attrs["reason"]
