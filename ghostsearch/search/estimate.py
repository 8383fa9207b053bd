"""How long a search will take: a pre-start estimate from a few timed training steps on this
machine, and a running estimate from the trials that have finished."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path

import optuna
import torch

from ..arch.config import NetConfig
from ..train.data import Dataset
from ..train.loop import build_proxy_model, make_optimizer, train_step
from ..train.recipe import Recipe
from .proxy import proxy_config
from .settings import SearchSettings
from .study import trained_count


def usable_cores() -> int:
    """Cores this process may run on: its CPU affinity (taskset, a container's cpuset), not
    every core of the machine; and a cgroup CPU quota where one is set (Docker's --cpus)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    with contextlib.suppress(OSError, ValueError):  # no cgroup v2 file, or not a quota
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cores = min(cores, max(1, int(int(quota) / int(period))))
    return max(1, cores)


def thread_cap() -> int | None:
    """The user's OMP_NUM_THREADS when it is a positive integer: on a machine that other jobs
    keep busy, one thread per process runs many times faster than two that wait for each
    other, and a user who says so is obeyed."""
    try:
        cap = int(os.environ.get("OMP_NUM_THREADS", ""))
    except ValueError:
        return None
    return cap if cap > 0 else None


def worker_threads(n_jobs: int) -> int:
    """CPU threads per spawned worker when `n_jobs` workers share this machine's cores, at most
    the user's OMP_NUM_THREADS."""
    share = max(1, usable_cores() // max(1, n_jobs))
    cap = thread_cap()
    return min(share, cap) if cap else share


def trial_threads(n_jobs: int) -> int:
    """CPU threads a trial will train with: a single worker runs in this process with its
    thread setting (torch's, which OMP_NUM_THREADS sets), several run spawned with
    `worker_threads`. The estimate times with these, or it times another machine."""
    return torch.get_num_threads() if n_jobs == 1 else worker_threads(n_jobs)


MAX_DEFAULT_CPU_WORKERS = 8  # each worker holds its own copy of the data and a model


def default_n_jobs(device_type: str) -> int:
    """Workers when --n-jobs is not given. On a CPU, one single-thread worker per core: on 2
    cores two workers train 1.79x the trials an hour of one two-thread worker (a second thread
    speeds one training by only 1.22x; docs/benchmarks.md). Capped to bound memory. On a GPU,
    one worker per device."""
    if device_type != "cpu":
        return 1
    return max(1, min(usable_cores(), MAX_DEFAULT_CPU_WORKERS))


def busy_warning(load: float, threads: int) -> str | None:
    """A warning when other processes already kept the cores busy (`load`: the one-minute
    load average before this command started working) and each trial will train with several
    threads: those threads wait for each other behind the other processes, and the trials (and
    the estimate, timed under the same load) run several times slower than on an idle machine."""
    cores = usable_cores()
    if threads < 2 or load < cores / 2:
        return None
    return (f"warning: this machine was already busy (load {load:.1f} on {cores} cores) and each "
            f"trial trains with {threads} threads, which wait for each other beside other "
            "processes; OMP_NUM_THREADS=1 is often several times faster while other jobs run")


def format_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


@dataclass(frozen=True)
class Estimate:
    images_per_s: float  # training throughput of one worker, measured here
    trial_s: float  # one trial trained to the end (training, per-epoch validation, test)
    total_s: float  # every trial, the workers in parallel

    def describe(self, trials: int, n_jobs: int) -> str:
        return (f"about {format_duration(self.trial_s)} per trial trained to the end "
                f"({self.images_per_s:.0f} training images/s per worker measured here), "
                f"up to {format_duration(self.total_s)} for {trials} trials with {n_jobs} "
                f"worker(s)")


def trial_seconds(images_per_s: float, protocol: Recipe, data: Dataset) -> float:
    """Seconds of one full proxy training: every epoch's steps and validation, then the test.
    Evaluation runs forward only, about three times faster than a training step per image."""
    steps = len(data.train) // min(protocol.batch_size, len(data.train))
    train = protocol.epochs * steps * min(protocol.batch_size, len(data.train))
    evaluated = protocol.epochs * len(data.val) + len(data.test)
    return (train + evaluated / 3) / images_per_s


def measure_throughput(cfg: NetConfig, protocol: Recipe, device: torch.device,
                       threads: int | None = None, steps: int = 3) -> float:
    """Training images per second of `cfg` (a proxy config) at the protocol's batch size, timed
    over `steps` steps after one untimed warm-up step, with random data."""
    previous = torch.get_num_threads()
    if threads is not None and device.type == "cpu":
        torch.set_num_threads(threads)
    try:
        model = build_proxy_model(cfg, 0, device)
        opt = make_optimizer(model, protocol)
        res = cfg.resolution
        x = torch.randn(protocol.batch_size, cfg.in_channels, res, res, device=device)
        x = x.contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, cfg.num_classes, (protocol.batch_size,), device=device)
        amp = device.type == "cuda"
        train_step(model, x, y, opt, protocol.label_smoothing, amp)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        for _ in range(steps):
            train_step(model, x, y, opt, protocol.label_smoothing, amp)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return steps * protocol.batch_size / (time.perf_counter() - start)
    finally:
        torch.set_num_threads(previous)


def estimate_search(settings: SearchSettings, data: Dataset, cfgs: list[NetConfig],
                    device: torch.device) -> Estimate:
    """Time each of `cfgs` here (with the threads each trial will use) and scale their
    mean trial to the search's trials: the candidates a prescreen picked and the references
    when known, else one representative. Kernel sizes and expansions weigh on a CPU beyond
    their FLOPs, so timing the very candidates beats scaling one by FLOPs."""

    batch = min(settings.protocol.batch_size, len(data.train))
    protocol = dataclasses.replace(settings.protocol, batch_size=batch)
    rates = [measure_throughput(proxy_config(cfg, data, settings.protocol), protocol, device,
                                threads=trial_threads(settings.n_jobs)) for cfg in cfgs]
    per_trial = sum(trial_seconds(r, settings.protocol, data) for r in rates) / len(rates)
    ips = sum(rates) / len(rates)
    return Estimate(ips, per_trial, per_trial * settings.trials / settings.n_jobs)


def remaining_seconds(study: optuna.Study, settings: SearchSettings) -> float | None:
    """Wall time left, from the mean wall time of the trials that trained and finished; None
    before the first one has."""

    done = [t for t in study.get_trials(deepcopy=False)
            if t.user_attrs.get("decision") == "train" and t.datetime_complete is not None
            and t.datetime_start is not None]
    if not done:
        return None
    mean = sum((t.datetime_complete - t.datetime_start).total_seconds() for t in done) / len(done)
    left = max(0, settings.trials - trained_count(study))
    return left * mean / settings.n_jobs
