"""The pre-start estimate times trials with the threads they will really train with, and a
user's OMP_NUM_THREADS caps the workers' threads."""

from types import SimpleNamespace

import pytest
import torch

from ghostsearch.search import estimate
from ghostsearch.train.recipe import Recipe


@pytest.fixture
def four_cores(monkeypatch):
    monkeypatch.setattr(estimate, "usable_cores", lambda: 4)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)


@pytest.mark.parametrize("env, n_jobs, threads", [
    (None, 1, 4), (None, 2, 2), (None, 8, 1),
    ("1", 1, 1), ("1", 2, 1), ("3", 1, 3), ("8", 2, 2),
    ("0", 2, 2), ("two", 2, 2), ("", 1, 4),
])
def test_workers_take_their_share_of_the_cores_at_most_omp_num_threads(
        four_cores, monkeypatch, env, n_jobs, threads):
    if env is not None:
        monkeypatch.setenv("OMP_NUM_THREADS", env)
    assert estimate.worker_threads(n_jobs) == threads


def test_the_estimate_times_with_the_threads_each_trial_trains_with(four_cores, monkeypatch):
    """One worker trains in this process with torch's thread setting; several are spawned
    with their share. Timing one worker with every core (while the trial runs with one
    thread, as OMP_NUM_THREADS=1 asks) announced a search 20 times longer than it was."""
    timed: list[int | None] = []
    monkeypatch.setattr(estimate, "measure_throughput",
                        lambda cfg, protocol, device, threads=None: timed.append(threads) or 100.0)
    monkeypatch.setattr(estimate, "proxy_config", lambda cfg, data, proto: cfg)
    data = SimpleNamespace(train=range(1000), val=range(200), test=range(300))
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for n_jobs in (1, 2):
            settings = SimpleNamespace(protocol=Recipe(epochs=2, batch_size=100), n_jobs=n_jobs,
                                       trials=4)
            est = estimate.estimate_search(settings, data, ["a", "b"], torch.device("cpu"))
            # 2 epochs x 1000 images + (2 x 200 + 300) evaluated at a third of the cost
            assert est.trial_s == pytest.approx((2000 + 700 / 3) / 100.0)
            assert est.total_s == pytest.approx(est.trial_s * 4 / n_jobs)
    finally:
        torch.set_num_threads(previous)
    assert timed == [1, 1, 2, 2]


def test_a_busy_machine_is_named_when_trials_use_several_threads(four_cores):
    assert estimate.busy_warning(0.3, 4) is None  # idle
    assert estimate.busy_warning(3.5, 1) is None  # one thread each does not wait for another
    assert estimate.busy_warning(2.0, 2) == (
        "warning: this machine was already busy (load 2.0 on 4 cores) and each trial trains "
        "with 2 threads, which wait for each other beside other processes; "
        "OMP_NUM_THREADS=1 is often several times faster while other jobs run")
