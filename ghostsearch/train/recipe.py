"""Training recipes: every knob of a training run, with units, as one frozen record that is
stored beside every result (a search's proxy trainings, the ground truth, confirmations).

A recipe is data, like a search space: the named ones are YAML files shipped with the package
(`ghostsearch/recipes/*.yaml`), and a user's own recipe is a YAML or JSON file with the same
fields (`load_recipe`). Unknown fields and bad values are refused in one line naming the field.

Identity: `Recipe.identity()` is what a run's key hashes. The knobs added after the first
recipes (augmentation, EMA, precision, the optimiser, ...) enter it only when they differ from
the values that reproduce the earlier runs bit for bit, so keys of runs stored before they
existed stay valid; the name is a label and never enters it.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError
from ..provenance import write_atomic

SCHEDULES = ("onecycle", "cosine", "constant")
OPTIMIZERS = ("sgd", "adamw")
PRECISIONS = ("auto", "fp32", "bf16")
FORMAT = "ghostsearch.recipe/1"


@dataclass(frozen=True)
class Recipe:
    """Every knob of a training run (a search's proxy, a ground-truth or confirmation unit),
    with units. Recorded with every trial and unit; the defaults reproduce the earlier runs."""

    epochs: int = 5  # passes over the training images
    batch_size: int = 512  # images per step
    lr: float = 0.4  # peak learning rate for batch 512 (scaled linearly with batch size)
    momentum: float = 0.9  # Nesterov (sgd); beta1 (adamw)
    weight_decay: float = 5e-4  # on conv/linear weights only, not BN or biases
    label_smoothing: float = 0.1
    warmup: float = 0.2  # fraction of steps of linear warm-up (onecycle, cosine)
    schedule: str = "onecycle"  # onecycle: linear up then linear down to 0; cosine; constant
    small_input_stem_stride: int = 1  # stem stride for proxy images of 64 px or less
    # --- since 0.5 (their defaults are the behaviour before them) ---
    name: str = ""  # a label (the named recipe's name); not part of a run's identity
    train_images: int | None = None  # training images after the hold-out (None: all of them)
    optimizer: str = "sgd"  # sgd (Nesterov) or adamw
    crop_pad: int = 4  # per-image random crop from a zero-padded image, px of padding (0: off)
    flip: bool = True  # per-image random horizontal flip
    cutout: int = 0  # side in px of one zeroed square per image, placed at random (0: off)
    mixup: float = 0.0  # Beta(alpha, alpha) of mixup per batch (0: off)
    cutmix: float = 0.0  # Beta(alpha, alpha) of cutmix per batch (0: off; both: half each)
    ema: float = 0.0  # decay per step of an exponential moving average of the weights that
    #                   is evaluated instead of the weights (0: off)
    precision: str = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU; fp32; bf16
    threads: int = 0  # CPU threads of the training process (0: the worker's share)

    def __post_init__(self) -> None:
        def bad(field: str, value: Any, why: str) -> ConfigError:
            who = f"recipe {self.name!r}: " if self.name else ""
            return ConfigError(f"{who}{field}={value!r}: {why}")

        ints = ("epochs", "batch_size", "small_input_stem_stride", "crop_pad", "cutout",
                "threads")
        for f in ints:
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int):
                raise bad(f, v, "must be an integer")
        floats = ("lr", "momentum", "weight_decay", "label_smoothing", "warmup", "mixup",
                  "cutmix", "ema")
        for f in floats:
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise bad(f, v, "must be a finite number")
        if not isinstance(self.flip, bool):
            raise bad("flip", self.flip, "must be true or false")
        if self.epochs < 1:
            raise bad("epochs", self.epochs, "must be >= 1")
        if self.batch_size < 1:
            raise bad("batch_size", self.batch_size, "must be >= 1")
        if self.lr <= 0:
            raise bad("lr", self.lr, "must be a positive number")
        if not 0 <= self.momentum < 1:
            raise bad("momentum", self.momentum, "must be in [0, 1)")
        if self.weight_decay < 0:
            raise bad("weight_decay", self.weight_decay, "must be >= 0")
        if not 0 <= self.label_smoothing < 1:
            raise bad("label_smoothing", self.label_smoothing, "must be in [0, 1)")
        if self.schedule not in SCHEDULES:
            raise bad("schedule", self.schedule, f"choose one of {', '.join(SCHEDULES)}")
        if not 0 <= self.warmup < 1:
            raise bad("warmup", self.warmup, "must be in [0, 1)")
        if self.small_input_stem_stride not in (1, 2):
            raise bad("small_input_stem_stride", self.small_input_stem_stride, "must be 1 or 2")
        if self.train_images is not None and (isinstance(self.train_images, bool) or not
                                              isinstance(self.train_images, int)
                                              or self.train_images < 1):
            raise bad("train_images", self.train_images, "must be a positive integer or null")
        if self.optimizer not in OPTIMIZERS:
            raise bad("optimizer", self.optimizer, f"choose one of {', '.join(OPTIMIZERS)}")
        for f in ("crop_pad", "cutout", "threads"):
            if getattr(self, f) < 0:
                raise bad(f, getattr(self, f), "must be >= 0")
        for f in ("mixup", "cutmix"):
            if getattr(self, f) < 0:
                raise bad(f, getattr(self, f), "must be >= 0 (0: off)")
        if not 0 <= self.ema < 1:
            raise bad("ema", self.ema, "must be in [0, 1) (0: off)")
        if self.precision not in PRECISIONS:
            raise bad("precision", self.precision, f"choose one of {', '.join(PRECISIONS)}")

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

    def amp(self, device_type: str) -> bool:
        """Whether the run uses bfloat16 autocast on a device of this type."""
        if self.precision == "auto":
            return device_type == "cuda"
        return self.precision == "bf16"

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "recipe") -> Recipe:
        """Strict: unknown fields are refused, a missing field takes its default."""
        if not isinstance(d, dict):
            raise ConfigError(f"{source}: expected a mapping of recipe fields, got "
                              f"{type(d).__name__}")
        d = dict(d)
        fmt = d.pop("format", FORMAT)
        if fmt != FORMAT:
            raise ConfigError(f"{source}: format={fmt!r}: expected {FORMAT!r}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown field {unknown[0]!r} (known: "
                              f"{', '.join(sorted(known))})")
        try:
            return cls(**d)
        except ConfigError as e:  # say where the bad value came from, once
            msg, own = str(e), f"recipe {d.get('name', '')!r}: "
            raise ConfigError(f"{source}: {msg.removeprefix(own)}") from None

    def identity(self) -> dict[str, Any]:
        """The fields that determine a run (what its key hashes) beside the data: the name is
        dropped, and a knob added in 0.5 only enters when it differs from its default."""
        d = dataclasses.asdict(self)
        d.pop("name")
        d.pop("train_images")  # the data's fingerprint (the images trained on) holds it
        for f in _LATER_FIELDS:
            if d[f] == _DEFAULTS[f]:
                del d[f]
        return d

    def describe(self) -> str:
        """One line for logs and reports."""
        images = "all" if self.train_images is None else f"{self.train_images:,}"
        aug = [a for a, on in (("crop", self.crop_pad > 0), ("flip", self.flip),
                               (f"cutout{self.cutout}", self.cutout > 0),
                               (f"mixup{self.mixup:g}", self.mixup > 0),
                               (f"cutmix{self.cutmix:g}", self.cutmix > 0)) if on]
        return (f"{self.name or 'recipe'}: {self.epochs} epochs on {images} images, batch "
                f"{self.batch_size}, {self.optimizer} {self.schedule}, "
                f"aug {'+'.join(aug) or 'none'}, ls {self.label_smoothing:g}"
                + (f", ema {self.ema:g}" if self.ema else ""))


_DEFAULTS = {f.name: f.default for f in dataclasses.fields(Recipe)}
_LATER_FIELDS = ("optimizer", "crop_pad", "flip", "cutout", "mixup", "cutmix",
                 "ema", "precision", "threads")


def recipe_names() -> list[str]:
    """The named recipes shipped with the package."""
    folder = resources.files("ghostsearch") / "recipes"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_recipe(name_or_path: str | Path) -> Recipe:
    """A named recipe (`recipe_names()`) or a YAML/JSON file of recipe fields. A file's recipe
    is named after the file unless it names itself."""
    text = str(name_or_path)
    if text in recipe_names():
        src = resources.files("ghostsearch") / "recipes" / f"{text}.yaml"
        d = yaml.safe_load(src.read_text())
        return Recipe.from_dict({**d, "name": text}, f"recipe {text!r}")
    path = Path(text)
    if not path.is_file():
        raise ConfigError(f"--recipe {text}: neither a named recipe ({', '.join(recipe_names())}) "
                          "nor a file")
    try:
        raw = path.read_text()
        d = json.loads(raw) if path.suffix == ".json" else yaml.safe_load(raw)
    except (OSError, ValueError, yaml.YAMLError) as e:
        first = (str(e).splitlines() or [""])[0]
        raise ConfigError(f"--recipe {path}: not readable as {path.suffix[1:] or 'YAML'} "
                          f"({first})") from None
    if isinstance(d, dict) and "name" not in d:
        d = {**d, "name": path.stem}
    return Recipe.from_dict(d, f"--recipe {path}")


def save_recipe(recipe: Recipe, path: str | Path) -> Path:
    """Write `recipe` as JSON or YAML (by the suffix); `load_recipe` reads it back equal."""
    path = Path(path)
    d = recipe.to_dict()
    text = (json.dumps(d, indent=2) + "\n" if path.suffix == ".json"
            else yaml.safe_dump(d, sort_keys=False))
    write_atomic(path, text)
    return path


# The long protocol of the ground-truth table and of confirmation runs: 10,000 images x 12
# epochs = 120,000 images seen at batch 128, cosine schedule, tested on the full test split.
# The same numbers as recipes/ground-truth.yaml (a test checks that they agree).
GROUND_TRUTH_PROTOCOL = Recipe(epochs=12, batch_size=128, lr=0.4, momentum=0.9,
                               weight_decay=5e-4, label_smoothing=0.0, warmup=0.05,
                               schedule="cosine")
GROUND_TRUTH_DATA = {"train_subset": 10_000, "val_size": 2_000, "split_seed": 0}
