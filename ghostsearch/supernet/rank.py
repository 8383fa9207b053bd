"""Ranking architectures with inherited weights: extract the sub-network, recalibrate its
BatchNorm statistics on a few hundred training images (the shared running statistics mix
every sub-network trained), and measure its accuracy on the held-out validation split."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

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
