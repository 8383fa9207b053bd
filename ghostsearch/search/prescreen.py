"""Prescreening: sample a pool of candidates within every limit (counted from their configs,
nothing trained), score each with a training-free score from one batch of proxy images, and
enqueue only the best few for proxy training. The whole pool is recorded in the study."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import optuna
import torch

from ..arch.config import NetConfig
from ..arch.counting import analytic_counts
from ..errors import ConfigError
from ..progress import progress_bar
from ..spaces.limits import Limits
from ..spaces.space import Draws, sample_band
from ..supernet.rank import supernet_accuracy
from ..supernet.train import load_supernet
from ..train.data import Dataset
from .proxy import proxy_config
from .scores import score_architecture

PRESCREEN_KEY = "prescreen"  # study attribute: the scored pool
SCORE_BATCH = 64  # proxy images the scores see


def score_batch(data: Dataset, n: int = SCORE_BATCH) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `n` training images, normalised as the trainer normalises them."""
    x = data.train.images[:n].float()
    mean = torch.tensor(data.mean).view(1, -1, 1, 1)
    std = torch.tensor(data.std).view(1, -1, 1, 1)
    return (x - mean) / std, data.train.labels[:n]


def pool_draws(settings: Any) -> Draws:
    """`settings.pool` distinct points of the space in the band under every limit, drawn
    uniformly from the search seed (the same points every time), with the draws it took.
    Raises ConfigError when the limits leave too few candidates."""
    limits = Limits.of(settings)
    low, high = limits.flops_range()
    try:
        return sample_band(settings.space, settings.pool, settings.seed, low_flops=low,
                           high_flops=high, max_tries=200 * settings.pool + 20_000,
                           accept=limits.in_band)
    except ConfigError:
        raise ConfigError(f"--pool {settings.pool}: the space holds fewer distinct candidates "
                          f"than that in {limits.describe_band()}; lower --pool, widen --band "
                          "or raise the limits") from None


def pool_points(settings: Any) -> list[dict[str, Any]]:
    return pool_draws(settings).points


def build_pool(settings: Any, data: Dataset, progress: bool = False) -> dict[str, Any]:
    """Score every candidate of `pool_points` and mark the best `settings.top`."""

    space = settings.space
    draws = pool_draws(settings)
    points = draws.points
    if settings.prescreen == "supernet":
        return _supernet_pool(settings, data, draws, progress)
    x, y = score_batch(data)
    cfgs = [space.build_config(p) for p in points]
    pcfgs = [proxy_config(c, data, settings.protocol).to_dict() for c in cfgs]
    workers = max(1, min(settings.n_jobs, len(points)))
    bar = progress_bar(total=len(points), desc=f"prescreen ({settings.prescreen})",
                       unit="candidate", disable=not progress, dynamic_ncols=True)
    args = (pcfgs, [settings.prescreen] * len(pcfgs), [x] * len(pcfgs), [y] * len(pcfgs),
            [settings.seed] * len(pcfgs))
    values: list[float] = []
    cpu = 0.0
    with contextlib.ExitStack() as stack:
        stack.callback(bar.close)
        if workers == 1:
            scored = map(_score_one, *args)
        else:  # one single-thread process per worker: the cores a search would train on
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            pool = stack.enter_context(ProcessPoolExecutor(
                workers, mp_context=mp.get_context("spawn"), initializer=_one_thread))
            scored = pool.map(_score_one, *args, chunksize=8)
        for v, c in scored:
            values.append(v)
            cpu += c
            bar.update(1)
    return _ranked(settings, points, cfgs, values, draws, cpu_seconds=cpu, workers=workers,
                   batch=len(y))


def _ranked(settings: Any, points: list[dict[str, Any]], cfgs: list[Any], values: list[float],
            draws: Draws, **extra: Any) -> dict[str, Any]:
    """The scored pool, ranked best first, the best `settings.top` picked."""
    rows = [{"params": params, "arch": cfg.short(), "flops": analytic_counts(cfg).flops,
             "score": value} for params, cfg, value in zip(points, cfgs, values, strict=True)]
    order = sorted(range(len(rows)), key=lambda i: (-rows[i]["score"], i))
    for rank, i in enumerate(order):
        rows[i]["rank"] = rank
        rows[i]["picked"] = rank < settings.top
    return {"score": settings.prescreen, "pool": rows, "top": settings.top,
            "band": Limits.of(settings).describe_band(), "draws": draws.summary(), **extra}


def _supernet_pool(settings: Any, data: Dataset, draws: Draws, progress: bool) -> dict[str, Any]:
    """The pool scored by validation accuracy with weights inherited from the supernet (after
    BatchNorm recalibration), in this process."""

    sn, state = load_supernet(settings.supernet)
    if (data.num_classes, data.resolution) != (sn.task.num_classes, sn.task.resolution):
        raise ConfigError(f"--supernet {settings.supernet}: trained for {sn.task.num_classes} "
                          f"classes at {sn.task.resolution} px, this data has "
                          f"{data.num_classes} at {data.resolution} px")
    cfgs = [settings.space.build_config(p) for p in draws.points]
    bar = progress_bar(total=len(cfgs), desc="prescreen (supernet)", unit="candidate",
                       disable=not progress, dynamic_ncols=True)
    values, start = [], time.process_time()
    with contextlib.closing(bar):
        for params in draws.points:
            values.append(supernet_accuracy(sn, params, data))
            bar.update(1)
    return _ranked(settings, draws.points, cfgs, values, draws,
                   cpu_seconds=time.process_time() - start, workers=1,
                   supernet={"path": str(settings.supernet), "epoch": state["epoch"]})


def _one_thread() -> None:
    torch.set_num_threads(1)


def _score_one(pcfg: dict[str, Any], score: str, x: torch.Tensor, y: torch.Tensor,
               seed: int) -> tuple[float, float]:
    """One candidate's score and the CPU-seconds it took (in whichever process runs it)."""

    start = time.process_time()
    value = score_architecture(NetConfig.from_dict(pcfg), score, x, y, seed=seed)
    return value, time.process_time() - start


def ensure_prescreen(study: optuna.Study, settings: Any, data: Dataset,
                     progress: bool = False) -> None:
    """Once per study: build the pool, store it, and enqueue the picked candidates in their
    score order (after the baselines)."""
    if settings.prescreen is None or PRESCREEN_KEY in study.user_attrs:
        return
    pool = build_pool(settings, data, progress)
    study.set_user_attr(PRESCREEN_KEY, pool)
    for row in sorted((r for r in pool["pool"] if r["picked"]), key=lambda r: r["rank"]):
        study.enqueue_trial(row["params"], user_attrs={"prescreen_rank": row["rank"],
                                                       "prescreen_score": row["score"]})


def picked_params(study: optuna.Study) -> list[dict[str, Any]]:
    """The points of the space the prescreen picked for training, best first (none before it
    has run)."""
    pool = study.user_attrs.get(PRESCREEN_KEY, {}).get("pool", [])
    return [r["params"] for r in sorted((r for r in pool if r["picked"]), key=lambda r: r["rank"])]
