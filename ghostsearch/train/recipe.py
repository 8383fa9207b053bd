"""Training recipes: every knob of a training run, with units, as one frozen record that is
stored beside every result (a search's proxy trainings, the ground truth, confirmations), and
the named long protocol of the ground truth and of confirmations."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import ConfigError

SCHEDULES = ("onecycle", "cosine", "constant")


@dataclass(frozen=True)
class Recipe:
    """Every knob of a training run (a search's proxy, a ground-truth or confirmation unit),
    with units. Recorded with every trial and unit."""

    epochs: int = 5  # passes over the training split (45,000 images for CIFAR-10)
    batch_size: int = 512  # images per step
    lr: float = 0.4  # peak SGD learning rate for batch 512 (scaled linearly with batch size)
    momentum: float = 0.9  # Nesterov
    weight_decay: float = 5e-4  # on conv/linear weights only, not BN or biases
    label_smoothing: float = 0.1
    warmup: float = 0.2  # fraction of steps of linear warm-up (onecycle, cosine)
    schedule: str = "onecycle"  # onecycle: linear up then linear down to 0; cosine; constant
    small_input_stem_stride: int = 1  # stem stride for proxy images of 64 px or less

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"--epochs {self.epochs}: must be >= 1")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size {self.batch_size}: must be >= 1")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"--lr {self.lr}: must be a positive number")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"--schedule {self.schedule!r}: choose one of {', '.join(SCHEDULES)}")
        if not 0 <= self.warmup < 1:
            raise ConfigError(f"warmup={self.warmup}: must be in [0, 1)")

    def lr_at(self, step: int, total: int) -> float:
        """Learning rate at `step` of `total`, for the batch size this protocol uses."""
        peak = self.lr * self.batch_size / 512
        t = step / max(1, total)
        if self.schedule == "constant":
            return peak
        if t < self.warmup:
            return peak * (step + 1) / max(1, self.warmup * total)
        rest = (t - self.warmup) / (1 - self.warmup)
        if self.schedule == "onecycle":
            return peak * (1 - rest)
        return peak * 0.5 * (1 + math.cos(math.pi * rest))


# The long protocol of the ground-truth table and of confirmation runs: 10,000 images x 12
# epochs = 120,000 images seen at batch 128, cosine schedule, tested on the full test split.
GROUND_TRUTH_PROTOCOL = Recipe(epochs=12, batch_size=128, lr=0.4, momentum=0.9,
                               weight_decay=5e-4, label_smoothing=0.0, warmup=0.05,
                               schedule="cosine")
GROUND_TRUTH_DATA = {"train_subset": 10_000, "val_size": 2_000, "split_seed": 0}
