"""One trial of a search: suggest an architecture, count it, refuse it untrained when over a
limit or below the band (recorded as infeasible, with no value), claim a training slot, then
proxy-train it with per-epoch reports to the pruner."""

from __future__ import annotations

import time
from collections.abc import Callable

import optuna
import torch

from ..arch.config import NetConfig
from ..arch.counting import analytic_counts
from ..provenance import runtime_info
from ..spaces.limits import Limits
from ..train.data import Dataset
from ..train.loop import train_proxy
from ..units import mark_worker
from .proxy import proxy_config
from .settings import SearchSettings
from .study import _counts_as_trained, take_back_killed


def trial_seed(study_seed: int, number: int) -> int:
    """A fixed, recorded seed per trial: same study seed and trial number, same training."""
    return (study_seed * 1_000_003 + number * 7919) % (2**31 - 1)


def claim_training_slot(study: optuna.Study, number: int, target: int,
                        wait_s: float = 30.0) -> bool:
    """Whether trial `number` may train without the study passing `target` trained trials.

    Decided in trial-number order, so workers in any number of processes or machines agree
    without a lock: each trial marks itself `pending` first, and a trial waits until every
    earlier trial has decided, then counts those that train. A decision takes milliseconds;
    one still pending after `wait_s` (its worker died between start and decision) is not
    waited for, so in that case one trial more than `target` may train.
    """
    deadline = time.time() + wait_s
    while True:
        earlier = [t for t in study.get_trials(deepcopy=False) if t.number < number]
        pending = [t for t in earlier if t.state == optuna.trial.TrialState.RUNNING
                   and t.user_attrs.get("decision") == "pending"]
        if not pending or time.time() > deadline:
            return sum(_counts_as_trained(t, running=True) for t in earlier) < target
        time.sleep(0.1)


class Interrupts:
    """Ctrl-C and SIGTERM, deferred to where they can be handled. Inside a trial's objective
    they raise KeyboardInterrupt at once (the trial is recorded as interrupted); anywhere else
    (Optuna storing a finished trial, starting the next) they only set `requested`, which the
    next trial or the stop callback turns into a clean stop: an interrupt raised inside
    Optuna's own bookkeeping left a traceback and a half-stored trial."""

    def __init__(self) -> None:
        self.requested = False
        self.inside = False

    def enter(self) -> None:
        self.inside = True
        if self.requested:
            raise KeyboardInterrupt

    def leave(self) -> None:
        self.inside = False

    def handler(self, signum: int, frame: object) -> None:
        self.requested = True
        if self.inside:
            self.inside = False
            raise KeyboardInterrupt


INTERRUPTS = Interrupts()


class TrialFailed(RuntimeError):
    """A candidate's training failed; the message is the recorded reason. Raised without the
    original traceback, whose frames would keep the failed model's tensors alive."""


class Objective:
    """One trial: suggest, count, refuse candidates outside the band untrained, else
    proxy-train.

    Ctrl-C ends the running trial as PRUNED with decision `interrupted` (Optuna would log a
    failed trial otherwise), stops the study, and sets `interrupted`, which the worker turns
    back into KeyboardInterrupt once Optuna has returned.
    """

    def __init__(self, settings: SearchSettings, data: Dataset, device: torch.device,
                 on_epoch: Callable[[int, int, float], None] | None = None) -> None:
        self.s = settings
        self.data = data
        self.device = device
        self.on_epoch = on_epoch
        self.interrupted = False
        self.limits = Limits.of(settings)
        self.table = self.limits.table

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, ...]:
        trial.set_user_attr("decision", "pending")  # others wait for this trial's decision
        try:
            return self._run(trial)
        except optuna.TrialPruned:
            raise
        except KeyboardInterrupt:
            trial.set_user_attr("decision", "interrupted")
            trial.set_user_attr("reason", "interrupted")
            self.interrupted = True
            trial.study.stop()
            raise optuna.TrialPruned("interrupted") from None
        except Exception as e:  # any fault ends this trial, recorded; the search goes on
            first = (str(e).splitlines() or [""])[0]
            reason = f"{type(e).__name__}: {first}"[:300]
            trial.set_user_attr("reason", reason)
            if trial.user_attrs.get("decision") == "pending":
                trial.set_user_attr("decision", "skip")
        # out of the except block the exception and its frames are gone, so the failed
        # candidate's tensors are free and the cache can give their memory back
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        raise TrialFailed(reason)

    def _run(self, trial: optuna.Trial) -> float | tuple[float, ...]:
        try:
            INTERRUPTS.enter()  # an interrupt now raises here, not in Optuna's bookkeeping
            return self._run_inner(trial)
        finally:
            INTERRUPTS.leave()

    def _run_inner(self, trial: optuna.Trial) -> float | tuple[float, ...]:
        s = self.s
        cfg: NetConfig = s.space.suggest(trial)
        check = self.limits.check(cfg)
        baseline = trial.user_attrs.get("baseline")
        seed = trial_seed(s.seed, trial.number)
        for key, value in check.constraints.items():
            trial.set_constraint(key, value)
        draws = getattr(trial.study.sampler, "draws", {}).get(trial.number)
        for key, value in {"config": cfg.to_dict(), "arch": cfg.short(),
                           "space_params": s.space.snap(trial.params), "flops": check.flops,
                           "params": check.params, "seed": seed, "feasible": check.within,
                           "in_band": check.in_band, "band_draws": draws,
                           "budget_flops": s.budget_flops, "latency_ms": check.latency_ms,
                           "latency_source": self.table and f"predicted ({self.table.device})",
                           }.items():
            trial.set_user_attr(key, value)
        if not check.in_band and not baseline:
            # recorded as infeasible (its constraints), never trained, never given a value
            if check.within:  # below the band: a constraint of its own, so samplers learn it
                trial.set_constraint("band", check.band_gap)
            trial.set_user_attr("reason", check.reasons(self.limits))
            trial.set_user_attr("decision", "skip")
            raise optuna.TrialPruned(check.reasons(self.limits))
        mark_worker(trial)  # a rerun on this machine takes the trial back if this process dies
        take_back_killed(trial.study)  # a killed worker's trial holds no training slot
        if not claim_training_slot(trial.study, trial.number, s.trials):
            trial.set_user_attr("decision", "surplus")
            trial.set_user_attr("reason", f"surplus: {s.trials} trials were already trained "
                                          "or training in other workers")
            trial.study.stop()
            raise optuna.TrialPruned()
        trial.set_user_attr("decision", "train")
        trial.set_user_attr("trained", True)
        trial.set_user_attr("ran_on", runtime_info(self.device))  # versions, commit, threads
        if not check.within:
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
        return self._values(result.val_acc, check.flops, check.params, check.latency_ms)

    def _values(self, acc: float, flops: int, params: int,
                latency: float | None) -> float | tuple[float, ...]:
        values = {"accuracy": acc, "flops": flops / 1e6, "params": params / 1e6,
                  "latency": latency}
        out = tuple(values[o] for o in self.s.objectives)
        return out if self.s.multi_objective else out[0]
