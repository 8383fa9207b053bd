"""The Optuna study of a search: created or resumed with the settings it was made with, its
sampler (one seed per worker), the reference baselines enqueued once, and queries on its trials
(how many trained, the best within every limit)."""

from __future__ import annotations

import copy
import hashlib
import os

import optuna

from ..errors import StudyError
from ..log import logger
from ..spaces.limits import Limits
from ..spaces.sampler import BandSampler, base_sampler
from ..spaces.space import SearchSpace
from ..units import fail_gone, unit_of
from .prescreen import PRESCREEN_KEY
from .settings import SearchSettings
from .storage import make_storage, retry_once

BASELINE_WIDTHS = (0.5, 1.0)


def make_sampler(settings: SearchSettings, seed: int) -> BandSampler:
    """The sampler of one worker: the chosen Optuna sampler restricted to the band."""
    base = base_sampler(settings.sampler, seed, settings.multi_objective)
    return BandSampler(base, settings.space, Limits.of(settings), seed)


def make_pruner(settings: SearchSettings) -> optuna.pruners.BasePruner:
    """Optuna's pruners on per-epoch validation accuracy (Optuna prunes single-objective
    studies only: a multi-objective study trains every trial to the end)."""
    epochs = settings.protocol.epochs
    if settings.multi_objective or settings.pruner == "none":
        return optuna.pruners.NopPruner()
    if settings.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs,
                                              reduction_factor=3)
    if settings.pruner == "sha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)


def sampler_seed(study_seed: int, worker: int, started: int, creator: bool = True) -> int:
    """The sampler seed of one worker process.

    The process that created the study, while no trial has started, uses the study seed, so a
    one-process search is reproducible. Any other worker (spawned, resuming, or another command
    joining the study) mixes in its index, the trials already started and its process id:
    workers seeded alike would propose the same architectures in the same order and train them
    twice. The constant liar does not prevent that: TPE's first trials are random draws, and
    workers with one seed draw the same ones (measured in docs/search.md).
    """
    if creator and worker == 0 and started == 0:
        return study_seed
    key = f"{study_seed}/{worker}/{started}/{os.getpid()}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:4], "little")


# studies created by this process: its later opens (the worker after run_trials) are the creator's
_created_here: set[tuple[str, str]] = set()


def width_name(width: float) -> str:
    return f"GhostNet {width:.1f}x" if round(width, 1) == width else f"GhostNet {width:.2f}x"


REFERENCE_WIDTHS_KEY = "reference_widths"  # what the study compares with, read by confirm


def baseline_widths(space: SearchSpace, limits: Limits | None) -> list[tuple[str, float]]:
    """Reference GhostNets to train beside the search: 0.5x, 1.0x and the widest within the
    limits (the FLOPs budget and, when one is set, the latency limit on its table's runtime:
    the reference a latency-limited search must beat is the widest GhostNet that meets the
    latency, not the FLOPs).

    Only widths whose reference GhostNet is a point of the space (a space that leaves out the
    paper's s, d, k or depths has no baseline inside it).
    """
    widths = space.reference_widths
    out = [(width_name(w), w) for w in BASELINE_WIDTHS if w in widths]
    if limits is not None and (limits.budget_flops is not None or limits.latency_ms is not None):
        fitting = [w for w in widths
                   if limits.check(space.build_config(space.reference_params(w))).within]
        if fitting:  # named as such even when it is 0.5x or 1.0x: confirm compares with it
            widest = max(fitting)
            label = f"{width_name(widest)} (widest within budget)"
            out = [(label if w == widest else name, w) for name, w in out]
            if widest not in [w for _, w in out]:
                out.append((label, widest))
    return out


def open_study(settings: SearchSettings, worker: int = 0) -> optuna.Study:
    """Create the study, or resume it when the settings match what it was created with.

    `worker` numbers the spawned worker processes from 1 (0: the only or the calling process);
    it seeds the sampler apart from the other workers' (see `sampler_seed`).
    """
    storage = make_storage(settings.storage, settings.heartbeat_s)
    directions = ["maximize"] + ["minimize"] * (len(settings.objectives) - 1)
    pruner = make_pruner(settings)
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
    changed = sorted(k for k in identity if (previous or identity).get(k) != identity.get(k))
    if changed:
        raise StudyError(
            f"study {settings.study_name!r} was created with other {', '.join(changed)}; "
            "rerun with its original options to resume, or pass a new --study-name")
    if previous != identity:  # a new study, or settings added since, at their defaults
        study.set_user_attr("settings", identity)
        study.set_user_attr("space", settings.space.to_dict())
    if created:  # once per study, whatever the number of workers
        widths = baseline_widths(settings.space, Limits.of(settings))
        study.set_user_attr(REFERENCE_WIDTHS_KEY, [[name, w] for name, w in widths])
        for name, width in widths if settings.baselines else []:
            study.enqueue_trial(settings.space.reference_params(width),
                                user_attrs={"baseline": name})
    return study


def replace_unstarted(settings: SearchSettings) -> list[str]:
    """Delete a stored study of this name that was made with other settings but never trained
    a trial (a search stopped at its estimate, say), so the command can start afresh; returns
    what differed (empty: nothing replaced). A study with trained trials is never touched,
    and one holding a scored prescreen pool is refused (StudyError), not deleted."""
    storage = make_storage(settings.storage, settings.heartbeat_s)
    try:
        study = optuna.load_study(study_name=settings.study_name, storage=storage)
    except KeyError:
        return []
    previous = study.user_attrs.get("settings") or {}
    identity = settings.identity()
    changed = sorted(k for k in identity if previous.get(k) != identity[k])
    if not changed or trained_count(study, running=True) > 0:
        return []
    pool = study.user_attrs.get(PRESCREEN_KEY)
    if pool:  # computed work: never thrown away without being asked
        raise StudyError(
            f"study {settings.study_name!r} holds a prescreen pool ({len(pool.get('pool', []))} "
            f"candidates, {pool.get('cpu_seconds', 0):.0f} CPU-s) made with other "
            f"{', '.join(changed)}; rerun with those settings, or give a new --study-name")
    optuna.delete_study(study_name=settings.study_name, storage=storage)
    _created_here.discard((settings.storage, settings.study_name))
    return changed


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


def record_data(study: optuna.Study, split_id: str, preprocessing: dict) -> None:
    """Store which validation images the study selects on and the preprocessing its models
    expect; a worker whose data holds out other images is refused."""
    known = study.user_attrs.get("split")
    if known is None:
        study.set_user_attr("split", split_id)
        study.set_user_attr("preprocessing", preprocessing)
    elif known != split_id:
        raise StudyError(f"study {study.study_name!r} selects on validation split {known}, "
                         f"this data holds out {split_id}; use the study's data options")


def best_feasible(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """Highest validation accuracy among completed trials within every limit."""
    done = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if t.user_attrs.get("feasible") and t.user_attrs.get("val_acc") is not None]
    return max(done, key=lambda t: (t.user_attrs["val_acc"], -t.number), default=None)


def take_back_killed(study: optuna.Study) -> int:
    """Fail the trials left RUNNING by a worker of this machine whose process is gone (killed,
    even by SIGKILL) and retry each once, as Optuna's heartbeat does after its grace period:
    a search rerun at once retrains the killed trial's architecture instead of leaving it
    RUNNING (for ever, on a journal storage, which has no heartbeat). Returns how many."""
    retry = (getattr(study._storage, "get_heartbeat_stale_trial_callback", lambda: None)()
             or retry_once())
    gone = fail_gone(study, lambda t: unit_of(t) is None)
    for t in gone:
        retry(study, copy.deepcopy(t))  # the callback extends the trial's retry history
        logger.info(f"trial {t.number}: its worker (pid {t.user_attrs['pid']} on this "
                    "machine) is gone; its architecture is trained again")
    return len(gone)
