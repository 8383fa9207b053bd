"""Named proxy protocols with their data subsets, so a user picks one word instead of composing
four flags. Each is a recorded protocol; the numbers are measured, not chosen by taste
(docs/search.md gives the measurements)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from ..train.recipe import Recipe


@dataclass(frozen=True)
class Preset:
    name: str
    protocol: Recipe
    train_cap: int | None  # train on at most this many images (None: all after the hold-out)
    val_cap: int | None  # hold out at most this many for validation (None: 5,000 or a tenth)
    about: str
    # the search mode the preset defaults to (each overridden by its flag): a training-free
    # prescreen of `pool` candidates training the best `top`, and the pruner
    prescreen: str | None = None
    pool: int = 200
    top: int = 10
    pruner: str = "median"
    # candidates trained when there is no prescreen, the references on top (None: 40 trials
    # in all, references included)
    candidates: int | None = None


PRESETS = {p.name: p for p in (
    # The GPU protocol: 45,000 CIFAR-10 images x 5 epochs at batch 512. Measured once on an
    # H100 (torch 2.11, timm ghostnet_100): about 4 s an epoch after a 40-70 s first epoch,
    # ~75% test accuracy; not run on a GPU since (docs/search.md).
    Preset("gpu", Recipe(epochs=5, batch_size=512), None, None,
           "5 epochs on the whole training split, batch 512 (for a GPU)"),
    # The CPU protocol of the committed 40-trial CPU search: 5,000 images x 3 epochs at batch
    # 64, 2,000 held out; 76 trained trials an hour with 2 workers on a 2-core CPU.
    # Its search mode follows the out-of-sample simulation on the band's ground truth (30
    # architectures in [170, 200] MFLOPs, docs/benchmarks.md): at 3 trained candidates no
    # training-free prescreen picked better than 3 random draws from the band (NASWOT 10->3
    # 67.4%, FLOPs 10->3 67.7%, random 67.7% expected validation; only a trained supernet,
    # 68.0%, did, within noise), so the preset trains 3 candidates drawn from the band.
    # A prescreen asked with --prescreen scores 12 and trains the best 3.
    # No pruning: with so few, a median pruner would stop good ones on one noisy epoch.
    Preset("cpu", Recipe(epochs=3, batch_size=64), 5_000, 2_000,
           "3 epochs on 5,000 images, batch 64, 2,000 held out, 3 candidates drawn from the "
           "band and trained, no pruning (about 25 min on 2 CPU cores that two other "
           "trainings shared; the estimate it prints is for yours)",
           pool=12, top=3, pruner="none", candidates=3),
    # For trying the tool: seconds a trial, too short to rank architectures well.
    Preset("quick", Recipe(epochs=1, batch_size=64), 1_000, 500,
           "1 epoch on 1,000 images, batch 64, 500 held out (for trying the tool)"),
)}

def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ConfigError(f"--preset {name!r}: choose one of {', '.join(PRESETS)}")
    return PRESETS[name]
