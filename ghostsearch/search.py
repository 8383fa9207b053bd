"""The Optuna study: candidates from a space, hard budgets before any training, baselines,
proxy training, storage that resumes, and workers that share one study."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import multiprocessing as mp
import os
import random
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch

from .config import ConfigError, NetConfig
from .counting import analytic_counts
from .data import DEFAULT_DATA_DIR, Dataset, load_data
from .proxy import ProxyProtocol, pick_device, proxy_config, train_proxy
from .space import SearchSpace

OBJECTIVES = ("accuracy", "flops", "params", "latency")
SAMPLERS = ("tpe", "nsga2", "random")
BASELINE_WIDTHS = (0.5, 1.0)
# a sampler that keeps proposing over-budget candidates is stopped after this many in a row
MAX_INFEASIBLE_STREAK = 2000


@dataclass(frozen=True)
class DataSpec:
    """How each worker loads the data (workers are separate processes)."""

    name: str = "cifar10"
    data_dir: str | None = DEFAULT_DATA_DIR
    val_size: int | None = None
    train_subset: int | None = None
    resolution: int | None = None
    seed: int = 0

    def load(self, progress: bool = True) -> Dataset:
        return load_data(self.name, self.data_dir, val_size=self.val_size,
                         train_subset=self.train_subset, resolution=self.resolution,
                         seed=self.seed, progress=progress)


@dataclass(frozen=True)
class SearchSettings:
    study_name: str
    storage: str
    space: SearchSpace
    data: DataSpec
    protocol: ProxyProtocol
    budget_flops: int | None = None
    objectives: tuple[str, ...] = ("accuracy",)
    sampler: str = "tpe"
    trials: int = 40  # trained trials (baselines included); over-budget ones are not counted
    timeout: float | None = None  # seconds
    seed: int = 0
    device: str = "auto"
    n_jobs: int = 1
    prune: bool = True
    baselines: bool = True
    heartbeat_s: int = 30  # a killed worker's trial is failed after 3 missed beats
    latency_ms: float | None = None  # hard limit on the predicted deployment latency
    latency_table: str | None = None  # a LatencyTable file (scripts/build_latency_table.py)
    cuda_graphs: bool = False  # replay each proxy training step as CUDA graphs

    def __post_init__(self) -> None:
        if self.trials < 1:
            raise ConfigError(f"--trials {self.trials}: must be >= 1")
        if self.heartbeat_s < 1:
            raise ConfigError(f"heartbeat_s={self.heartbeat_s}: must be >= 1 second")
        if self.n_jobs < 1:
            raise ConfigError(f"--n-jobs {self.n_jobs}: must be >= 1")
        if self.timeout is not None and self.timeout <= 0:
            raise ConfigError(f"--timeout {self.timeout}: must be a positive number of seconds")
        if not self.objectives or self.objectives[0] != "accuracy" or any(
                o not in OBJECTIVES for o in self.objectives) or len(set(self.objectives)) != len(
                self.objectives):
            raise ConfigError(f"--objectives {','.join(self.objectives)}: start with accuracy, "
                              f"then any of {', '.join(OBJECTIVES[1:])} (e.g. accuracy,flops)")
        needs_table = self.latency_ms is not None or "latency" in self.objectives
        if needs_table and self.latency_table is None:
            raise ConfigError("--latency-ms and the latency objective need --latency-table FILE "
                              "(make one with scripts/build_latency_table.py)")
        if self.latency_ms is not None and not self.latency_ms > 0:
            raise ConfigError(f"--latency-ms {self.latency_ms}: must be a positive number")
        if self.latency_table is not None:
            from .latency_table import LatencyTable

            table = LatencyTable.load(self.latency_table)  # refuses an unreadable file
            if table.resolution != self.space.deployment.resolution:
                raise ConfigError(
                    f"--latency-table {self.latency_table}: built at {table.resolution}px, "
                    f"the space deploys at {self.space.deployment.resolution}px")
        if self.cuda_graphs and pick_device(self.device).type != "cuda":
            raise ConfigError("--cuda-graphs needs a CUDA device (--device cuda)")
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"--sampler {self.sampler!r}: choose one of {', '.join(SAMPLERS)}")
        check_storage_url(self.storage)
        if self.budget_flops is not None:  # refused before any data is loaded
            low = smallest_flops(self.space)
            if self.budget_flops < low:
                raise ConfigError(
                    f"--budget {self.budget_flops / 1e6:.2f}M is below the smallest architecture "
                    f"of space {self.space.name!r} ({low / 1e6:.2f} MFLOPs at "
                    f"{self.space.deployment.resolution}px); raise it or use a smaller space")

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    def identity(self) -> dict[str, Any]:
        """What must not change when a study is resumed (a change makes it another study)."""
        space = json.dumps(self.space.to_dict(), sort_keys=True)
        return {
            "space": self.space.name,
            "space_sha256": hashlib.sha256(space.encode()).hexdigest()[:16],
            "budget_flops": self.budget_flops,
            "latency_ms": self.latency_ms,
            "latency_table": (None if self.latency_table is None else hashlib.sha256(
                Path(self.latency_table).read_bytes()).hexdigest()[:16]),
            "objectives": list(self.objectives),
            "data": dataclasses.asdict(self.data),
            "protocol": dataclasses.asdict(self.protocol),
            "seed": self.seed,
        }


def default_storage(study_name: str, results_dir: str | Path = "results") -> str:
    path = Path(results_dir) / study_name / "study.db"  # made by make_storage, when first used
    return f"sqlite:///{path}"


def make_storage(url: str, heartbeat_s: int = 30) -> optuna.storages.BaseStorage:
    """RDB storages get a heartbeat, so a killed worker's trial is failed (after three missed
    beats) and its configuration retried once."""
    check_storage_url(url)
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    if url.startswith(("sqlite:", "postgresql", "mysql")):
        engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite:") else {}
        import sqlalchemy.exc

        for attempt in range(6):
            try:
                with warnings.catch_warnings():  # the heartbeat is "experimental" (Optuna 2.8)
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    return optuna.storages.RDBStorage(
                        url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_s,
                        grace_period=3 * heartbeat_s,
                        heartbeat_stale_trial_callback=(
                            optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)))
            except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
                # workers started together on an empty database race to create its tables;
                # the loser retries and finds them made
                if attempt == 5:
                    raise
                time.sleep(0.2 + random.random())
    from optuna.storages.journal import JournalFileBackend  # journal:PATH, the one left

    return optuna.storages.JournalStorage(JournalFileBackend(url[len("journal:"):]))


def check_storage_url(url: str) -> None:
    if not url.startswith(("sqlite:", "postgresql", "mysql", "journal:")):
        raise ConfigError(f"--storage {url!r}: unknown scheme; use sqlite:///PATH, "
                          "postgresql://..., mysql://... or journal:PATH")


def make_sampler(settings: SearchSettings, seed: int) -> optuna.samplers.BaseSampler:
    if settings.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if settings.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=20)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=10,
                                      multivariate=settings.multi_objective or None)


def sampler_seed(study_seed: int, worker: int, started: int, creator: bool = True) -> int:
    """The sampler seed of one worker process.

    The process that created the study, while no trial has started, uses the study seed, so a
    one-process search is reproducible. Any other worker (spawned, resuming, or another command
    joining the study) mixes in its index, the trials already started and its process id:
    workers seeded alike would propose the same architectures in the same order and train them
    twice (seen in a 2-worker search).
    """
    if creator and worker == 0 and started == 0:
        return study_seed
    key = f"{study_seed}/{worker}/{started}/{os.getpid()}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:4], "little")


# studies created by this process: its later opens (the worker after run_search) are the creator's
_created_here: set[tuple[str, str]] = set()


def trial_seed(study_seed: int, number: int) -> int:
    """A fixed, recorded seed per trial: same study seed and trial number, same training."""
    return (study_seed * 1_000_003 + number * 7919) % (2**31 - 1)


def width_name(width: float) -> str:
    return f"GhostNet {width:.1f}x" if round(width, 1) == width else f"GhostNet {width:.2f}x"


def baseline_widths(space: SearchSpace, budget_flops: int | None) -> list[tuple[str, float]]:
    """Reference GhostNets to train beside the search: 0.5x, 1.0x and the widest within budget.

    Only widths whose reference GhostNet is a point of the space (a space that leaves out the
    paper's s, d, k or depths has no baseline inside it).
    """
    widths = [w for w in space.width if space.contains(space.reference_params(w))]
    out = [(width_name(w), w) for w in BASELINE_WIDTHS if w in widths]
    if budget_flops is not None:
        fitting = [w for w in widths
                   if analytic_counts(space.build_config(space.reference_params(w))).flops
                   <= budget_flops]
        if fitting and max(fitting) not in [w for _, w in out]:
            out.append((f"{width_name(max(fitting))} (widest within budget)", max(fitting)))
    return out


def smallest_flops(space: SearchSpace) -> int:
    return analytic_counts(space.build_config(space.smallest_params())).flops


def open_study(settings: SearchSettings, worker: int = 0) -> optuna.Study:
    """Create the study, or resume it when the settings match what it was created with.

    `worker` numbers the spawned worker processes from 1 (0: the only or the calling process);
    it seeds the sampler apart from the other workers' (see `sampler_seed`).
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = make_storage(settings.storage, settings.heartbeat_s)
    directions = ["maximize"] + ["minimize"] * (len(settings.objectives) - 1)
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
              if settings.prune and not settings.multi_objective else optuna.pruners.NopPruner())
    kwargs = dict(storage=storage, study_name=settings.study_name, directions=directions,
                  pruner=pruner)
    try:  # the storage's unique study name makes exactly one of racing workers the creator
        study = optuna.create_study(**kwargs)
        created = True
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(**{k: v for k, v in kwargs.items() if k != "directions"})
        created = False
    if created:
        _created_here.add((settings.storage, settings.study_name))
    started = sum(t.state != optuna.trial.TrialState.WAITING
                  for t in study.get_trials(deepcopy=False))
    creator = (settings.storage, settings.study_name) in _created_here
    study.sampler = make_sampler(settings, sampler_seed(settings.seed, worker, started, creator))
    identity = settings.identity()
    previous = study.user_attrs.get("settings")
    if previous is None:
        study.set_user_attr("settings", identity)
        study.set_user_attr("space", settings.space.to_dict())
    elif previous != identity:
        changed = sorted(k for k in identity if previous.get(k) != identity.get(k))
        raise ConfigError(
            f"study {settings.study_name!r} was created with other {', '.join(changed)}; "
            "rerun with its original options to resume, or pass a new --study-name")
    if settings.baselines and created:  # once per study, whatever the number of workers
        for name, width in baseline_widths(settings.space, settings.budget_flops):
            study.enqueue_trial(settings.space.reference_params(width),
                                user_attrs={"baseline": name})
    return study


def _counts_as_trained(t: optuna.trial.FrozenTrial, *, running: bool) -> bool:
    """A trial that was given training: finished (completed, pruned, or failed with a recorded
    fault) or, with `running`, still training. A trial failed by the heartbeat (its worker was
    killed) has no recorded reason and does not count: its retry does."""
    if t.user_attrs.get("decision") != "train":
        return False
    state = optuna.trial.TrialState
    if t.state in (state.COMPLETE, state.PRUNED):
        return True
    if t.state == state.FAIL:
        return bool(t.user_attrs.get("reason"))
    return running and t.state == state.RUNNING


def trained_count(study: optuna.Study, running: bool = False) -> int:
    """Trials that got training time (feasible candidates and baselines)."""
    return sum(_counts_as_trained(t, running=running) for t in study.get_trials(deepcopy=False))


def claim_training_slot(study: optuna.Study, number: int, target: int,
                        wait_s: float = 30.0) -> bool:
    """Whether trial `number` may train without the study passing `target` trained trials.

    Decided in trial-number order, so workers in any number of processes or machines agree
    without a lock: each trial marks itself `pending` first, and a trial waits until every
    earlier trial has decided, then counts those that train.
    """
    deadline = time.time() + wait_s
    while True:
        earlier = [t for t in study.get_trials(deepcopy=False) if t.number < number]
        pending = [t for t in earlier if t.state == optuna.trial.TrialState.RUNNING
                   and t.user_attrs.get("decision") == "pending"]
        if not pending or time.time() > deadline:
            return sum(_counts_as_trained(t, running=True) for t in earlier) < target
        time.sleep(0.1)


def best_feasible(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """Highest validation accuracy among completed trials within every limit."""
    done = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if t.user_attrs.get("feasible") and t.user_attrs.get("val_acc") is not None]
    return max(done, key=lambda t: (t.user_attrs["val_acc"], -t.number), default=None)


class Objective:
    """One trial: suggest, count, refuse over-budget candidates untrained, else proxy-train."""

    def __init__(self, settings: SearchSettings, data: Dataset, device: torch.device,
                 on_epoch: Callable[[int, int, float], None] | None = None) -> None:
        self.s = settings
        self.data = data
        self.device = device
        self.on_epoch = on_epoch
        self.table = None
        if settings.latency_table is not None:
            from .latency_table import LatencyTable

            self.table = LatencyTable.load(settings.latency_table)

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, ...]:
        trial.set_user_attr("decision", "pending")  # others wait for this trial's decision
        try:
            return self._run(trial)
        except optuna.TrialPruned:
            raise
        except KeyboardInterrupt:  # Optuna fails the trial; it is not counted, not retried
            trial.set_user_attr("decision", "interrupted")
            trial.set_user_attr("reason", "interrupted (Ctrl-C); not counted")
            raise
        except Exception as e:  # any fault ends this trial, recorded; the search goes on
            first = (str(e).splitlines() or [""])[0]
            trial.set_user_attr("reason", f"{type(e).__name__}: {first}"[:300])
            if trial.user_attrs.get("decision") == "pending":
                trial.set_user_attr("decision", "skip")
            if self.device.type == "cuda":  # release what the failed candidate held
                torch.cuda.empty_cache()
            raise

    def _run(self, trial: optuna.Trial) -> float | tuple[float, ...]:
        s = self.s
        cfg: NetConfig = s.space.suggest(trial)
        counts = analytic_counts(cfg)
        baseline = trial.user_attrs.get("baseline")
        seed = trial_seed(s.seed, trial.number)
        over = counts.flops - s.budget_flops if s.budget_flops is not None else -1
        trial.set_constraint("flops", float(over))
        latency = self.table.predict(cfg) if self.table is not None else None
        over_latency = latency - s.latency_ms if s.latency_ms is not None else -1.0
        if s.latency_ms is not None:
            trial.set_constraint("latency", float(over_latency))
        for key, value in {"config": cfg.to_dict(), "arch": cfg.short(), "flops": counts.flops,
                           "params": counts.params, "seed": seed,
                           "feasible": over <= 0 and over_latency <= 0,
                           "budget_flops": s.budget_flops, "latency_ms": latency,
                           "latency_source": self.table and f"predicted ({self.table.device})",
                           }.items():
            trial.set_user_attr(key, value)
        if (over > 0 or over_latency > 0) and not baseline:
            reasons = []
            if over > 0:
                reasons.append(f"over budget: {counts.flops / 1e6:.2f} MFLOPs > "
                               f"{s.budget_flops / 1e6:.2f}M")
            if over_latency > 0:
                reasons.append(f"over latency limit: {latency:.2f} ms predicted > "
                               f"{s.latency_ms:g} ms")
            trial.set_user_attr("reason", "; ".join(reasons))
            trial.set_user_attr("decision", "skip")
            return self._values(0.0, counts.flops, counts.params, latency)  # never trained
        if not claim_training_slot(trial.study, trial.number, s.trials):
            trial.set_user_attr("decision", "surplus")
            trial.set_user_attr("reason", f"surplus: {s.trials} trials were already trained "
                                          "or training in other workers")
            trial.study.stop()
            raise optuna.TrialPruned()
        trial.set_user_attr("decision", "train")
        trial.set_user_attr("trained", True)
        if over > 0 or over_latency > 0:
            trial.set_user_attr("reason", "baseline over a limit: trained for comparison only")
        pcfg = proxy_config(cfg, self.data, s.protocol)
        trial.set_user_attr("proxy_flops", analytic_counts(pcfg).flops)

        def report(epoch: int, acc: float) -> None:
            if self.on_epoch is not None:
                self.on_epoch(trial.number, epoch, acc)
            if not s.multi_objective:
                trial.report(acc, epoch)
                last = epoch + 1 == s.protocol.epochs  # a finished training is kept, not pruned
                if not baseline and not last and trial.should_prune():
                    trial.set_user_attr("val_curve", curve + [acc])
                    trial.set_user_attr("reason", f"pruned after epoch {epoch + 1} "
                                                  f"(val {acc:.2f}%)")
                    raise optuna.TrialPruned()
            curve.append(acc)

        curve: list[float] = []
        result = train_proxy(pcfg, self.data, s.protocol, seed=seed, device=self.device,
                             on_epoch=report, cuda_graphs=s.cuda_graphs)
        for key, value in {"val_curve": result.val_curve, "val_acc": result.val_acc,
                           "test_acc": result.test_acc, "train_seconds": result.train_seconds,
                           "epochs_run": result.epochs_run}.items():
            trial.set_user_attr(key, value)
        return self._values(result.val_acc, counts.flops, counts.params, latency)

    def _values(self, acc: float, flops: int, params: int,
                latency: float | None) -> float | tuple[float, ...]:
        values = {"accuracy": acc, "flops": flops / 1e6, "params": params / 1e6,
                  "latency": latency}
        out = tuple(values[o] for o in self.s.objectives)
        return out if self.s.multi_objective else out[0]


def _stop_callback(settings: SearchSettings, streak: list[int]) -> Callable:
    def callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        streak[0] = 0 if trial.user_attrs.get("decision") != "skip" else streak[0] + 1
        if trained_count(study) >= settings.trials or streak[0] >= MAX_INFEASIBLE_STREAK:
            study.stop()
    return callback


class _QuietInterrupt(logging.Filter):
    """Ctrl-C is the user's choice, not a fault: no traceback from Optuna for it."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, KeyboardInterrupt) and "KeyboardInterrupt" not in str(
            record.msg)


def _quiet_interrupts() -> None:
    for handler in logging.getLogger("optuna").handlers:  # records come from child loggers
        if not any(isinstance(f, _QuietInterrupt) for f in handler.filters):
            handler.addFilter(_QuietInterrupt())


def run_worker(settings: SearchSettings, data: Dataset | None = None, *, device: str | None = None,
               progress: Callable[[optuna.Study, Any], None] | None = None,
               on_epoch: Callable[[int, int, float], None] | None = None,
               deadline: float | None = None, worker: int = 0) -> optuna.Study:
    """Run trials in this process until the study has `settings.trials` trained trials."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    _quiet_interrupts()
    study = open_study(settings, worker)
    if trained_count(study) >= settings.trials:
        return study
    data = data if data is not None else settings.data.load(progress=False)
    dev = pick_device(device or settings.device)
    streak = [0]
    callbacks = [_stop_callback(settings, streak)]
    if progress is not None:
        callbacks.append(progress)
    timeout = None if deadline is None else max(1.0, deadline - time.time())
    study.optimize(Objective(settings, data, dev, on_epoch), timeout=timeout,
                   callbacks=callbacks, catch=(Exception,), gc_after_trial=True)
    if streak[0] >= MAX_INFEASIBLE_STREAK:
        print(f"stopped: {MAX_INFEASIBLE_STREAK} over-budget candidates in a row; the budget "
              "leaves too little of the space (raise --budget or narrow the space)")
    return study


def _spawned_worker(settings: SearchSettings, device: str, deadline: float | None,
                    worker: int) -> None:
    if pick_device(device).type == "cpu":  # K workers share the cores instead of each taking all
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // settings.n_jobs))
    try:
        run_worker(settings, device=device, deadline=deadline, worker=worker)
    except KeyboardInterrupt:  # the parent reports; no traceback per worker
        return


def run_search(settings: SearchSettings, data: Dataset | None = None, *,
               devices: list[str] | None = None, show_progress: bool = True) -> optuna.Study:
    """Run the search to `settings.trials` trained trials (or the timeout), resuming if stored.

    With n_jobs > 1, that many worker processes share the study through its storage (each with
    its own CUDA context), spread round-robin over `devices`; this process shows progress.
    """
    from tqdm import tqdm

    study = open_study(settings)
    deadline = None if settings.timeout is None else time.time() + settings.timeout
    bar = tqdm(total=settings.trials, desc="trials", unit="trial", disable=not show_progress,
               initial=min(trained_count(study), settings.trials), dynamic_ncols=True)

    def describe(study: optuna.Study) -> dict[str, str]:
        best = best_feasible(study)
        return {"best_val": f"{best.user_attrs['val_acc']:.2f}%" if best else "-"}

    def progress(study: optuna.Study, _trial: Any) -> None:
        bar.n = min(trained_count(study), settings.trials)
        bar.set_postfix(describe(study), refresh=True)

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
            ctx = mp.get_context("spawn")
            procs = [ctx.Process(target=_spawned_worker,
                                 args=(settings, devices[i % len(devices)], deadline, i + 1))
                     for i in range(settings.n_jobs)]
            for p in procs:
                p.start()
            try:
                while any(p.is_alive() for p in procs):
                    progress(study, None)
                    time.sleep(2.0)
            finally:  # on Ctrl-C too: the workers got it as well; wait for them to save
                for p in procs:
                    p.join()
            failed = [p.exitcode for p in procs if p.exitcode != 0]
            if failed:
                print(f"warning: {len(failed)} worker(s) exited with codes {failed}")
        progress(study, None)
    finally:
        bar.close()
    return study


def load_existing_study(name: str, url: str | None = None) -> optuna.Study:
    """An existing study by name; without `url`, from results/<name>/study.db."""
    if url is None:
        db = Path("results") / name / "study.db"
        if not db.exists():
            raise ConfigError(f"--study-name {name!r}: no {db}; pass --storage")
        url = f"sqlite:///{db}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return optuna.load_study(study_name=name, storage=make_storage(url))
    except KeyError:
        raise ConfigError(f"--study-name {name!r}: no such study in {url}") from None
