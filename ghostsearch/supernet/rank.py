"""Ranking architectures with inherited weights: extract the sub-network, recalibrate its
BatchNorm statistics on a few hundred training images (the shared running statistics mix
every sub-network trained), and measure its accuracy on the held-out validation split."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..arch.counting import analytic_counts
from ..errors import ConfigError
from ..spaces.limits import Limits
from ..spaces.sampler import BandSampler, base_sampler
from ..spaces.space import sample_band
from ..train.data import Dataset, DeviceLoader, Split
from ..train.loop import eval_loader, evaluate
from .weights import SuperNet

CALIBRATION_IMAGES = 512


@torch.no_grad()
def recalibrate(model: nn.Module, data: Dataset, images: int = CALIBRATION_IMAGES,
                batch_size: int = 256) -> nn.Module:
    """Reset every BatchNorm's running statistics and re-estimate them as the plain average
    over the first `images` training images (un-augmented); the weights are untouched."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the calibration batches
    device = next(model.parameters()).device
    split = Split(data.train.images[:images], data.train.labels[:images])
    model.train()
    for x, _ in DeviceLoader(split, batch_size, data.mean, data.std, train=False,
                             device=device):
        model(x)
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    return model.eval()


def supernet_accuracy(sn: SuperNet, params: dict[str, Any], data: Dataset, *,
                      calibration: int = CALIBRATION_IMAGES,
                      val_images: int | None = None) -> float:
    """Validation accuracy (%) of the sub-network `params` with inherited weights, after
    BatchNorm recalibration on `calibration` training images; on the first `val_images`
    held-out images (default: all)."""
    device = next(sn.parameters()).device
    model = recalibrate(sn.extract(params).to(device), data, calibration)
    val = data.val if val_images is None else Split(data.val.images[:val_images],
                                                    data.val.labels[:val_images])
    return evaluate(model, eval_loader(data, val, device), amp=False)


def search_subnets(sn: SuperNet, data: Dataset, n: int, *, low_flops: int | None = None,
                   high_flops: int | None = None, sampler: str = "random", seed: int = 0,
                   calibration: int = CALIBRATION_IMAGES, val_images: int | None = None,
                   on_row: Callable[[dict[str, Any]], None] | None = None
                   ) -> list[dict[str, Any]]:
    """`n` candidates of the band [low_flops, high_flops] (deployment FLOPs) evaluated with
    inherited weights, proposed by `sampler`: "random" (distinct uniform draws from the band)
    or "tpe" (Optuna's multivariate TPE restricted to the band, learning from the accuracies
    it has seen; a point it proposes again is not evaluated twice). Each row: the point, its
    accuracy and the CPU-seconds it took."""
    import time


    space = sn.space

    def evaluate_point(params: dict[str, Any]) -> dict[str, Any]:
        start = time.process_time()
        acc = supernet_accuracy(sn, params, data, calibration=calibration,
                                val_images=val_images)
        row = {"params": params, "supernet_val_acc": acc,
               "mflops": analytic_counts(space.build_config(params)).flops / 1e6,
               "cpu_s": time.process_time() - start}
        if on_row is not None:
            on_row(row)
        return row

    if sampler == "random":
        points = sample_band(space, n, seed, low_flops=low_flops, high_flops=high_flops).points
        return [evaluate_point(p) for p in points]
    if sampler != "tpe":
        raise ConfigError(f"--sampler {sampler!r}: choose random or tpe")
    import optuna


    if high_flops is None:
        raise ConfigError("--sampler tpe needs a band (--band LO:HI)")
    limits = Limits(high_flops, band=(low_flops or 0) / high_flops)
    study = optuna.create_study(direction="maximize", sampler=BandSampler(
        base_sampler("tpe", seed, n_startup_trials=max(10, n // 10)), space, limits, seed))
    seen: dict[Any, dict[str, Any]] = {}
    while len(seen) < n:
        trial = study.ask()
        cfg = space.suggest(trial)
        if cfg not in seen:
            seen[cfg] = evaluate_point(dict(trial.params))
        study.tell(trial, seen[cfg]["supernet_val_acc"])
    return list(seen.values())
