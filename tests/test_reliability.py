"""Interruption, parallel and distributed workers, faults inside a trial, bad input."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import torch
from test_search import settings, space  # noqa: F401  (fixture)

import ghostsearch.search.objective as objective_mod
import ghostsearch.search.storage as storage_mod
import ghostsearch.train.loop as loop_mod
from ghostsearch import reference_config
from ghostsearch.search.proxy import proxy_config
from ghostsearch.search.settings import SearchSettings
from ghostsearch.search.study import trained_count
from ghostsearch.search.workers import run_trials
from ghostsearch.train.data import load_data
from ghostsearch.train.loop import TrainingDiverged, train_proxy
from ghostsearch.train.recipe import Recipe

ROOT = Path(__file__).resolve().parent.parent
QUICK = ["--preset", "quick", "--budget", "60M", "--data", "synthetic", "--batch-size", "32",
         "--train-subset", "64", "--val-size", "40", "--resolution", "16", "--device", "cpu",
         "--no-prune"]
State = optuna.trial.TrialState


def search_cmd(*args: str) -> list[str]:
    return [sys.executable, str(ROOT / "scripts" / "search.py"), *QUICK, *args]


def load(url: str, name: str) -> optuna.Study:
    """Through the product's storage, which waits out a search still creating its tables."""
    return optuna.load_study(study_name=name, storage=storage_mod.make_storage(url))


def stored_trials(url: str, name: str) -> list:
    """The study's trials, or none while the search has not created it yet."""
    try:
        return load(url, name).get_trials()
    except KeyError:
        return []


def _open_together(url: str, barrier, results) -> None:
    barrier.wait()
    try:
        storage_mod.make_storage(url)
        results.put("ok")
    except Exception as e:  # noqa: BLE001  (the parent asserts on what happened)
        results.put(f"{type(e).__name__}: {str(e).splitlines()[0]}")


def test_processes_opening_a_new_sqlite_database_together_all_get_it(tmp_path):
    """Workers, the command and a test's poller (or a dashboard) opening an empty database at
    once race to create its tables; SQLite tells the losers "table ... already exists"."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    for rep in range(2):
        url = f"sqlite:///{tmp_path / f'race{rep}.db'}"
        barrier, results = ctx.Barrier(6), ctx.Queue()
        procs = [ctx.Process(target=_open_together, args=(url, barrier, results))
                 for _ in range(6)]
        for p in procs:
            p.start()
        outcomes = [results.get(timeout=300) for _ in procs]
        for p in procs:
            p.join()
        assert outcomes == ["ok"] * 6


@pytest.mark.parametrize("kind, heartbeat, wait", [
    ("sqlite", "1", 3.5),  # after three missed beats: Optuna's heartbeat fails it
    ("sqlite", "30", 0.0),  # at once, long before the grace period: its worker here is gone
    ("journal", "30", 0.0),  # a storage with no heartbeat at all
])
def test_kill_9_then_rerun_keeps_trials_and_retries_the_killed_one(tmp_path, kind, heartbeat,
                                                                   wait):
    path = tmp_path / ("k.db" if kind == "sqlite" else "k.journal")
    url = f"sqlite:///{path}" if kind == "sqlite" else f"journal:{path}"
    args = ["--study-name", "k", "--storage", url, "--trials", "5", "--epochs", "6",
            "--heartbeat", heartbeat, "--no-baselines", "--n-jobs", "1"]  # one process to kill
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(search_cmd(*args), cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:  # kill -9 in the middle of a trial that follows a completed one
        deadline = time.time() + 300
        while time.time() < deadline:
            time.sleep(0.5)
            if not path.exists():
                continue
            trials = stored_trials(url, "k")
            done = [t for t in trials if "val_acc" in t.user_attrs]
            running = [t for t in trials if t.state == State.RUNNING
                       and t.user_attrs.get("val_curve") is None
                       and t.user_attrs.get("decision") == "train"]
            if done and running:
                break
        else:
            pytest.fail("the search never reached a second trial")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    before = {t.number: t.user_attrs["val_acc"]
              for t in load(url, "k").get_trials() if "val_acc" in t.user_attrs}
    killed = [t for t in load(url, "k").get_trials() if t.state == State.RUNNING]
    assert len(killed) == 1
    time.sleep(wait)
    r = subprocess.run(search_cmd(*args), cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    if not wait:
        assert (f"trial {killed[0].number}: its worker (pid {proc.pid} on this machine) is gone"
                in r.stdout)
    study = load(url, "k")
    assert trained_count(study) == 5
    trials = {t.number: t for t in study.get_trials()}
    assert all(trials[n].user_attrs["val_acc"] == acc for n, acc in before.items())
    assert trials[killed[0].number].state == State.FAIL
    retries = [t for t in trials.values()
               if optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(t)
               == killed[0].number]
    assert len(retries) == 1 and retries[0].params == killed[0].params
    assert retries[0].state == State.COMPLETE


@pytest.mark.parametrize("sig, jobs", [(signal.SIGINT, "1"), (signal.SIGTERM, "2")])
def test_ctrl_c_or_sigterm_stops_cleanly_and_says_how_to_resume(tmp_path, sig, jobs):
    """Ctrl-C, and SIGTERM sent to the command alone (as a job scheduler sends it), with its
    worker processes running."""
    args = ["--study-name", "c", "--trials", "50", "--epochs", "2", "--n-jobs", jobs]
    proc = subprocess.Popen(search_cmd(*args), cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    db = tmp_path / "results" / "c" / "study.db"
    deadline = time.time() + 300
    while time.time() < deadline:
        time.sleep(0.5)
        if db.exists() and any("val_acc" in t.user_attrs
                               for t in stored_trials(f"sqlite:///{db}", "c")):
            break
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert "rerun the same command to resume" in err and "Traceback" not in err
    assert (tmp_path / "results" / "c" / "report.html").exists()
    study = load(f"sqlite:///{db}", "c")
    assert trained_count(study) >= 1
    assert all(t.state != State.RUNNING for t in study.get_trials())


@pytest.mark.parametrize("storage", ["sqlite", "journal"])
def test_parallel_workers_reach_exactly_the_requested_count(tmp_path, storage):
    url = (f"sqlite:///{tmp_path / 'p.db'}" if storage == "sqlite"
           else f"journal:{tmp_path / 'p.log'}")
    r = subprocess.run(search_cmd("--study-name", "p", "--storage", url, "--trials", "6",
                                  "--epochs", "1", "--n-jobs", "3"),
                       cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    assert "database is locked" not in r.stderr + r.stdout
    study = optuna.load_study(study_name="p", storage=storage_mod.make_storage(url))
    assert trained_count(study) == 6
    assert not [t for t in study.get_trials() if t.state == State.FAIL]
    names = [t.user_attrs["baseline"] for t in study.get_trials()
             if t.user_attrs.get("baseline") and t.user_attrs.get("decision") == "train"]
    assert len(names) == len(set(names)) == 3
    assert_no_architecture_proposed_twice(study)


def assert_no_architecture_proposed_twice(study: optuna.Study) -> None:
    """Workers seeded alike propose the same architectures in the same order."""
    proposed = [json.dumps(t.params, sort_keys=True) for t in study.get_trials()
                if not t.user_attrs.get("baseline") and t.params]
    assert len(proposed) >= 3
    assert len(set(proposed)) == len(proposed)


def test_two_separate_commands_on_postgresql(tmp_path):
    url = os.environ.get("GHOSTSEARCH_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("PostgreSQL absent: set GHOSTSEARCH_TEST_POSTGRES_URL (.ci/run starts a "
                    "throw-away cluster and sets it)")
    name = f"pg-{os.getpid()}-{int(time.time())}"
    cmd = search_cmd("--study-name", name, "--storage", url, "--trials", "6", "--epochs", "1",
                     "--out", str(tmp_path / "out"))
    workers = [subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for w in workers:
        _, err = w.communicate(timeout=900)
        assert w.returncode == 0, err
    study = optuna.load_study(study_name=name, storage=url)
    assert trained_count(study) == 6
    per_worker = {t.user_attrs.get("seed") for t in study.get_trials()}
    assert len(per_worker) == len(study.get_trials())  # distinct trials, no duplicates
    assert_no_architecture_proposed_twice(study)
    names = [t.user_attrs["baseline"] for t in study.get_trials()
             if t.user_attrs.get("baseline") and t.user_attrs.get("decision") == "train"]
    assert len(names) == len(set(names))


def test_nan_loss_is_detected():
    data = load_data("synthetic", resolution=16, train_subset=64, val_size=40, progress=False)
    cfg = proxy_config(reference_config(0.3), data, Recipe())
    with pytest.raises(TrainingDiverged, match="loss is (nan|inf)"):
        train_proxy(cfg, data, Recipe(epochs=2, batch_size=32, lr=1e12,
                                      schedule="constant"), seed=0)


def test_faults_fail_the_trial_with_a_reason_and_the_search_goes_on(tmp_path, space,  # noqa: F811
                                                                     monkeypatch):
    calls = {"n": 0}
    real_train, real_build = objective_mod.train_proxy, loop_mod.build_model

    def faulty_train(cfg, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise TrainingDiverged("loss is nan in epoch 1")
        if calls["n"] == 3:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_train(cfg, *args, **kwargs)

    def faulty_build(cfg):
        if calls["n"] == 4:
            raise RuntimeError("cannot build this candidate")
        return real_build(cfg)

    monkeypatch.setattr(objective_mod, "train_proxy", faulty_train)
    monkeypatch.setattr(loop_mod, "build_model", faulty_build)
    study = run_trials(settings(tmp_path, space, trials=6), show_progress=False)
    failed = [t for t in study.get_trials() if t.state == State.FAIL]
    reasons = sorted(t.user_attrs["reason"] for t in failed)
    assert reasons == ["OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB",
                       "RuntimeError: cannot build this candidate",
                       "TrainingDiverged: loss is nan in epoch 1"]
    assert trained_count(study) == 6
    assert len([t for t in study.get_trials() if t.state == State.COMPLETE
                and t.user_attrs.get("val_acc") is not None]) == 3


def _tree_digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()


def test_reused_study_name_is_refused_without_changing_results(tmp_path):
    args = ["--study-name", "r", "--trials", "3", "--epochs", "1"]
    assert subprocess.run(search_cmd(*args), cwd=tmp_path, capture_output=True,
                          timeout=600).returncode == 0
    digest = _tree_digest(tmp_path / "results")
    r = subprocess.run(search_cmd(*args, "--budget", "70M"), cwd=tmp_path, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 2
    assert r.stderr.strip() == ("error: study 'r' was created with other budget_flops; rerun "
                                "with its original options to resume, or pass a new "
                                "--study-name")
    assert _tree_digest(tmp_path / "results") == digest


def test_corrupt_best_arch_is_refused(tmp_path):
    path = tmp_path / "best_arch.json"
    path.write_text('{"format": "ghostsearch.Architecture", "config": {"stem_channels": 16')
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "count.py"), "--config",
                        str(path)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "best_arch.json: not valid JSON" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_settings_refuse_a_zero_heartbeat(tmp_path, space):  # noqa: F811
    with pytest.raises(Exception, match="heartbeat_s=0"):
        SearchSettings(**{**settings(tmp_path, space).__dict__, "heartbeat_s": 0})


def _pop_units(url: str, queue, start: float) -> None:
    """Ask for enqueued trials until none is left; report which ones this process got."""
    import warnings

    warnings.simplefilter("ignore")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.load_study(study_name="q", storage=storage_mod.make_storage(url))
    while time.time() < start:  # every process asks from the same moment
        time.sleep(0.001)
    got = []
    while True:
        trial = study.ask()
        if "unit" not in trial.user_attrs:
            study.tell(trial, state=State.PRUNED)
            break
        got.append(trial.user_attrs["unit"])
    queue.put(got)


def test_an_enqueued_trial_goes_to_exactly_one_of_several_processes(tmp_path):
    """SQLite's deferred transactions let two processes both read a WAITING trial and both
    run it (60 enqueued, 4 processes: 70 pops before the storage began transactions with
    BEGIN IMMEDIATE)."""
    import multiprocessing

    url = f"sqlite:///{tmp_path / 'q.db'}"
    study = optuna.create_study(study_name="q", storage=storage_mod.make_storage(url))
    for i in range(60):
        study.enqueue_trial({}, user_attrs={"unit": i})
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    start = time.time() + 5
    procs = [ctx.Process(target=_pop_units, args=(url, queue, start)) for _ in range(4)]
    for p in procs:
        p.start()
    got = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    units = sorted(sum(got, []))
    assert units == list(range(60))  # each once: none lost, none run twice


def _no_setup() -> None:
    """A worker initializer with nothing to prepare."""


def _mark_and_sleep(path: str) -> None:
    """A unit of work that says when it runs, then outlasts the test."""
    Path(path).write_text("running")
    time.sleep(60)


def test_an_interrupt_terminates_the_benchmark_pools_workers_instead_of_waiting(tmp_path):
    """The ground-truth and proxy-table jobs resume from their files, so on Ctrl-C or SIGTERM
    the unit in flight is dropped: its worker is terminated, not waited for."""
    from ghostsearch.bench.pool import worker_pool

    mark = tmp_path / "running"
    with pytest.raises(KeyboardInterrupt), worker_pool(1, _no_setup, ()) as pool:
        future = pool.submit(_mark_and_sleep, str(mark))
        for _ in range(3000):  # the spawned worker takes a moment to start (more under load)
            if mark.exists():
                break
            time.sleep(0.1)
        processes = list(pool._processes.values())
        assert len(processes) == 1
        raise KeyboardInterrupt
    # the executor's own thread may reap the worker first, and a join racing it returns with
    # no exit code yet: wait until the code is recorded
    deadline = time.time() + 120
    while processes[0].exitcode is None and time.time() < deadline:
        processes[0].join(timeout=1)
    assert processes[0].exitcode == -signal.SIGTERM  # killed, not finished (that is 0)
    assert not future.done() or future.cancelled() or future.exception() is not None
