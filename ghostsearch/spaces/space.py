"""Search spaces as data: a YAML file of choices around the paper's GhostNet layout.

A space names, per stage of the layout (`reference.SEARCH_STAGES`), the choices for the ghost
ratio s, cheap kernel d, depthwise kernel k, an expansion multiplier on the reference channels,
the depth and SE (`none`, `reference` as in the paper, or `all`), optionally GhostNetV2's DFC
attention (`none`, `dfc`) and GhostNetV3's re-parameterised branches (`false`, `true`), plus a
global width multiplier; and the deployment target that budgets refer to. `suggest` is the only
code that calls `trial.suggest_*`; `build_config` turns the chosen values into a `NetConfig`.
"""

from __future__ import annotations

import dataclasses
import functools
import random
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ..arch.config import ATTENTION_CHOICES, BlockConfig, NetConfig
from ..arch.counting import analytic_counts
from ..arch.layers import make_divisible
from ..arch.reference import (
    ATTENTION_FROM_BLOCK,
    HEAD_CHANNELS,
    NUM_FEATURES,
    SEARCH_STAGES,
    STEM_CHANNELS,
    group_like_timm,
)
from ..errors import ConfigError

STAGE_KEYS = ("ghost_ratio", "cheap_kernel", "kernel", "expansion", "depth", "se")
# Choices a space may add; a space that leaves them out (or at these defaults) has the same
# parameters, draws and fingerprint as before they existed
OPTIONAL_KEYS = {"attention": ("none",), "reparam": (False,)}
ALL_KEYS = STAGE_KEYS + tuple(OPTIONAL_KEYS)
SE_CHOICES = ("none", "reference", "all")
SE_ALL_RATIO = 0.25
_TOP_KEYS = ("name", "description", "deployment", "width", "defaults", "stages")
_DEPLOY_KEYS = ("resolution", "num_classes", "stem_stride", "dropout")
STAGE_NAMES = tuple(f"stage{i + 1}" for i in range(len(SEARCH_STAGES)))


@dataclass(frozen=True)
class Deployment:
    """What a FLOPs or latency budget refers to (the paper: 224x224, 1000 classes)."""

    resolution: int = 224
    num_classes: int = 1000
    stem_stride: int = 2
    dropout: float = 0.2


@dataclass(frozen=True)
class StageChoices:
    ghost_ratio: tuple[int, ...]
    cheap_kernel: tuple[int, ...]
    kernel: tuple[int, ...]
    expansion: tuple[float, ...]
    depth: tuple[int, ...]
    se: tuple[str, ...]
    attention: tuple[str, ...] = OPTIONAL_KEYS["attention"]
    reparam: tuple[bool, ...] = OPTIONAL_KEYS["reparam"]


@dataclass(frozen=True)
class SearchSpace:
    name: str
    deployment: Deployment
    width: tuple[float, ...]
    stages: tuple[StageChoices, ...]  # one per reference.SEARCH_STAGES row group
    description: str = ""

    @property
    def stage_keys(self) -> tuple[str, ...]:
        """The per-stage parameters of this space: the six core ones, plus `attention` and
        `reparam` when some stage offers more than their default."""
        extra = tuple(k for k, default in OPTIONAL_KEYS.items()
                      if any(getattr(s, k) != default for s in self.stages))
        return STAGE_KEYS + extra

    # -- config construction -------------------------------------------------------------

    def build_config(self, params: dict[str, Any]) -> NetConfig:
        """The deployment NetConfig for one point of the space (Optuna-style flat params).

        DFC attention never goes on the network's first two bottlenecks, as in GhostNetV2 and
        V3, whatever their stage chose; GhostNetV3 blocks are counted in their fused form.
        """
        params = self.snap(params)
        width = float(params["width"])
        blocks: list[BlockConfig] = []
        for name, rows in zip(STAGE_NAMES, SEARCH_STAGES, strict=True):
            p = {key: params[f"{name}.{key}"] for key in STAGE_KEYS}
            p.update({key: params.get(f"{name}.{key}", default[0])
                      for key, default in OPTIONAL_KEYS.items()})
            depth = int(p["depth"])
            chosen = list(rows[:depth]) + [rows[-1]] * max(0, depth - len(rows))
            for _k, exp, c, se, stride in chosen:
                se_ratio = {"none": 0.0, "reference": se, "all": SE_ALL_RATIO}[p["se"]]
                attention = p["attention"] if len(blocks) >= ATTENTION_FROM_BLOCK else "none"
                blocks.append(BlockConfig(
                    kernel=int(p["kernel"]),
                    expansion=make_divisible(exp * float(p["expansion"]) * width, 4),
                    out_channels=make_divisible(c * width, 4),
                    se_ratio=se_ratio,
                    stride=stride,
                    ghost_ratio=int(p["ghost_ratio"]),
                    cheap_kernel=int(p["cheap_kernel"]),
                    attention=attention,
                    reparam=bool(p["reparam"]),
                ))
        d = self.deployment
        return NetConfig(
            stem_channels=make_divisible(STEM_CHANNELS * width, 4),
            stages=group_like_timm(blocks),
            head_channels=make_divisible(HEAD_CHANNELS * width, 4),
            num_features=NUM_FEATURES,
            num_classes=d.num_classes,
            resolution=d.resolution,
            stem_stride=d.stem_stride,
            dropout=d.dropout,
        )

    def choices(self) -> dict[str, tuple[Any, ...]]:
        """Every parameter of the space (flat names like `stage3.kernel`) and its choices."""
        out: dict[str, tuple[Any, ...]] = {"width": self.width}
        for name, stage in zip(STAGE_NAMES, self.stages, strict=True):
            for key in self.stage_keys:
                out[f"{name}.{key}"] = getattr(stage, key)
        return out

    def distributions(self) -> dict[str, Any]:
        """Optuna distributions of the parameters. Ordinal choices (width, depth, kernels,
        ratios, expansion) are ordered, so that a model-based sampler can use their order:
        stepped int or float distributions on an evenly spaced grid, else a float range whose
        draws `snap` to the nearest choice. True categories (SE, attention, reparam) and
        single choices stay categorical."""
        return {k: _distribution(v) for k, v in self.choices().items()}

    @functools.cached_property
    def _ordinals(self) -> tuple[tuple[str, tuple[Any, ...]], ...]:
        """The ordinal parameters and their choices, worked out once: `snap` runs on every
        `build_config`, thousands of times in a prescreen pool."""
        return tuple((k, v) for k, v in self.choices().items() if _ordinal(v))

    def snap(self, params: dict[str, Any], tolerance: float | None = None) -> dict[str, Any]:
        """`params` with every ordinal value moved to the nearest choice (a stepped float draw
        can be 0.6000000000000001; a float range draws between choices); with `tolerance`,
        only values that close to a choice move."""
        out = dict(params)
        for key, values in self._ordinals:
            v = out.get(key)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v not in values:
                near = min(values, key=lambda c: (abs(c - v), c))
                if tolerance is None or abs(near - v) < tolerance:
                    out[key] = near
        return out

    def suggest(self, trial: Any) -> NetConfig:
        """Ask an Optuna trial for every choice (names like `stage3.kernel`) and build it."""
        import optuna.distributions as od

        params: dict[str, Any] = {}
        for key, dist in self.distributions().items():
            if isinstance(dist, od.IntDistribution):
                params[key] = trial.suggest_int(key, dist.low, dist.high, step=dist.step)
            elif isinstance(dist, od.FloatDistribution):
                params[key] = trial.suggest_float(key, dist.low, dist.high, step=dist.step)
            else:
                params[key] = trial.suggest_categorical(key, dist.choices)
        return self.build_config(params)

    @property
    def reference_widths(self) -> list[float]:
        """The widths whose paper GhostNet is a point of this space (a space that leaves out
        the paper's s, d, k or depths has none)."""
        return [w for w in self.width if self.contains(self.reference_params(w))]

    def reference_config(self, width: float, option: str = "width") -> NetConfig:
        """The paper's GhostNet at `width`, refused in one line (naming `option`) when it is
        not a point of this space."""
        if width not in self.reference_widths:
            raise ConfigError(f"--{option} {width:g}: no reference GhostNet of that width in "
                              f"space {self.name!r} (widths: "
                              f"{', '.join(f'{w:g}' for w in self.reference_widths)})")
        return self.build_config(self.reference_params(width))

    def reference_params(self, width: float, version: int = 1) -> dict[str, Any]:
        """The point of this space that is the paper's GhostNet at `width` (s=2, d=3); with
        `version` 2 or 3, GhostNetV2 or V3 (a space without those choices has no such point)."""
        keys = self.stage_keys
        if version not in (1, 2, 3):
            raise ConfigError(f"version={version!r}: must be one of 1, 2, 3")
        needs = {2: ("attention",), 3: ("attention", "reparam")}.get(version, ())
        missing = [k for k in needs if k not in keys]
        if missing:
            raise ConfigError(f"space {self.name!r} has no {missing[0]} choices, so GhostNetV"
                              f"{version} is not one of its points")
        params: dict[str, Any] = {"width": width}
        for i, (name, rows) in enumerate(zip(STAGE_NAMES, SEARCH_STAGES, strict=True)):
            params.update({
                f"{name}.ghost_ratio": 2, f"{name}.cheap_kernel": 3,
                f"{name}.kernel": rows[0][0], f"{name}.expansion": 1.0,
                f"{name}.depth": len(rows), f"{name}.se": "reference",
            })
            if "attention" in keys:  # the first stage holds only block 0, which has no DFC
                params[f"{name}.attention"] = "dfc" if version > 1 and i > 0 else "none"
            if "reparam" in keys:
                params[f"{name}.reparam"] = version == 3
        return params

    def random_params(self, rng: random.Random) -> dict[str, Any]:
        """A uniformly random point: every choice drawn independently and uniformly."""
        params: dict[str, Any] = {"width": rng.choice(self.width)}
        for name, stage in zip(STAGE_NAMES, self.stages, strict=True):
            for key in self.stage_keys:
                params[f"{name}.{key}"] = rng.choice(getattr(stage, key))
        return params

    def contains(self, params: dict[str, Any]) -> bool:
        """Whether every value of `params` is one of this space's choices (up to the float noise
        of a stepped draw)."""
        params = self.snap(params, tolerance=1e-9)
        if params.get("width") not in self.width:
            return False
        keys = self.stage_keys
        return all(
            (params.get(f"{name}.{key}") in getattr(stage, key)) if key in keys
            else params.get(f"{name}.{key}", OPTIONAL_KEYS[key][0]) == OPTIONAL_KEYS[key][0]
            for name, stage in zip(STAGE_NAMES, self.stages, strict=True)
            for key in ALL_KEYS
        )

    def smallest_params(self) -> dict[str, Any]:
        """The cheapest corner: narrowest, shallowest, largest s, smallest d and k, no SE."""
        params: dict[str, Any] = {"width": min(self.width)}
        for name, stage in zip(STAGE_NAMES, self.stages, strict=True):
            se = "none" if "none" in stage.se else stage.se[0]
            params.update({
                f"{name}.ghost_ratio": max(stage.ghost_ratio),
                f"{name}.cheap_kernel": min(stage.cheap_kernel),
                f"{name}.kernel": min(stage.kernel), f"{name}.expansion": min(stage.expansion),
                f"{name}.depth": min(stage.depth), f"{name}.se": se,
            })
            if "attention" in self.stage_keys:
                params[f"{name}.attention"] = ("none" if "none" in stage.attention
                                               else stage.attention[0])
            if "reparam" in self.stage_keys:  # the same deployed cost either way
                params[f"{name}.reparam"] = stage.reparam[0]
        return params

    def fingerprint(self) -> str:
        """A short hash of the choices: a study or a ground-truth table belongs to one space."""
        import hashlib
        import json

        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "deployment": dataclasses.asdict(self.deployment),
            "width": list(self.width),
            "stages": {
                name: {k: list(getattr(s, k)) for k in self.stage_keys}
                for name, s in zip(STAGE_NAMES, self.stages, strict=True)
            },
        }


def _ordinal(values: tuple[Any, ...]) -> bool:
    return len(values) > 1 and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                   for v in values)


def _distribution(values: tuple[Any, ...]) -> Any:
    """The Optuna distribution of one parameter's choices (see `SearchSpace.distributions`)."""
    import optuna.distributions as od

    if not _ordinal(values):
        return od.CategoricalDistribution(values)
    ordered = sorted(values)
    steps = [b - a for a, b in zip(ordered, ordered[1:], strict=False)]
    even = all(abs(d - steps[0]) < 1e-9 for d in steps)
    if all(isinstance(v, int) for v in values):
        if even:
            return od.IntDistribution(ordered[0], ordered[-1], step=steps[0])
        return od.FloatDistribution(float(ordered[0]), float(ordered[-1]))
    return od.FloatDistribution(float(ordered[0]), float(ordered[-1]),
                                step=round(steps[0], 10) if even else None)


# -- parsing ------------------------------------------------------------------------------

def _choices(key: str, value: Any) -> tuple[Any, ...]:
    """A non-empty list of choices; a scalar is one choice; {low, high, step} is a grid."""
    if isinstance(value, dict):
        extra = set(value) - {"low", "high", "step"}
        if extra or not {"low", "high", "step"} <= set(value):
            raise ConfigError(f"{key}: a range needs exactly low, high and step")
        low, high, step = (value[k] for k in ("low", "high", "step"))
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                   for v in (low, high, step)) or step <= 0 or high < low:
            raise ConfigError(f"{key}: range needs numbers with low <= high and step > 0")
        n = int(round((high - low) / step)) + 1
        return tuple(round(low + i * step, 10) for i in range(n))
    if isinstance(value, list):
        if not value:
            raise ConfigError(f"{key}: empty choice list (give at least one value)")
        if len(set(map(repr, value))) != len(value):
            raise ConfigError(f"{key}: repeated choices in {value}")
        return tuple(value)
    return (value,)


def _check_stage_choice(key: str, field: str, value: Any) -> Any:
    """Refuse a choice the generator would refuse, naming the key."""
    base = {"kernel": 3, "expansion": 8, "out_channels": 8, "ghost_ratio": 2, "cheap_kernel": 3}
    try:
        if field in ("ghost_ratio", "cheap_kernel", "kernel"):
            BlockConfig(**{**base, field: value})
        elif field == "expansion":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ConfigError(f"expansion={value!r}: must be a positive multiplier")
            value = float(value)
        elif field == "depth":
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"depth={value!r}: must be an integer >= 1")
        elif field == "se" and value not in SE_CHOICES:
            raise ConfigError(f"se={value!r}: must be one of {', '.join(SE_CHOICES)}")
        elif field == "attention" and value not in ATTENTION_CHOICES:
            raise ConfigError(f"attention={value!r}: must be one of "
                              f"{', '.join(ATTENTION_CHOICES)}")
        elif field == "reparam" and not isinstance(value, bool):
            raise ConfigError(f"reparam={value!r}: must be true or false")
    except ConfigError as e:
        raise ConfigError(f"{key}: choice refused ({e})") from None
    return value


def space_from_dict(data: Any, source: str = "space") -> SearchSpace:
    """Strictly parse a space; every error is one line naming the key, after `source`."""
    try:
        return _parse_space(data)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None


def _parse_space(data: Any) -> SearchSpace:
    if not isinstance(data, dict):
        raise ConfigError(f"must be a mapping of {', '.join(_TOP_KEYS)}")
    for key in data:
        if key not in _TOP_KEYS:
            raise ConfigError(f"unknown key {key!r} (known: {', '.join(_TOP_KEYS)})")
    deploy_raw = data.get("deployment") or {}
    if not isinstance(deploy_raw, dict):
        raise ConfigError("deployment must be a mapping")
    for key in deploy_raw:
        if key not in _DEPLOY_KEYS:
            raise ConfigError(
                f"unknown key 'deployment.{key}' (known: {', '.join(_DEPLOY_KEYS)})"
            )
    deployment = Deployment(**deploy_raw)
    try:  # the deployment must be something the generator accepts
        NetConfig(stem_channels=8, stages=((BlockConfig(3, 8, 8),),), head_channels=8,
                  **dataclasses.asdict(deployment))
    except (ConfigError, TypeError) as e:
        raise ConfigError(f"deployment.{e}") from None

    if "width" not in data:
        raise ConfigError("missing key 'width' (the width multiplier choices)")
    width = _choices("width", data["width"])
    for w in width:
        if isinstance(w, bool) or not isinstance(w, (int, float)) or w <= 0:
            raise ConfigError(f"width: choice {w!r} refused (must be a positive number)")
    width = tuple(float(w) for w in width)

    defaults = data.get("defaults") or {}
    stages_raw = data.get("stages") or {}
    for where, mapping in (("defaults", defaults), ("stages", stages_raw)):
        if not isinstance(mapping, dict):
            raise ConfigError(f"{where} must be a mapping")
    for key in defaults:
        if key not in ALL_KEYS:
            raise ConfigError(f"unknown key 'defaults.{key}' "
                              f"(known: {', '.join(ALL_KEYS)})")
    for name in stages_raw:
        if name not in STAGE_NAMES:
            raise ConfigError(f"unknown key 'stages.{name}' "
                              f"(known: {', '.join(STAGE_NAMES)})")
    stages = []
    for name in STAGE_NAMES:
        stage = stages_raw.get(name) or {}
        if not isinstance(stage, dict):
            raise ConfigError(f"stages.{name} must be a mapping")
        fields: dict[str, tuple[Any, ...]] = {}
        for key in stage:
            if key not in ALL_KEYS:
                raise ConfigError(f"unknown key 'stages.{name}.{key}' "
                                  f"(known: {', '.join(ALL_KEYS)})")
        for key in ALL_KEYS:
            where = f"stages.{name}.{key}" if key in stage else f"defaults.{key}"
            if key in OPTIONAL_KEYS and key not in stage and key not in defaults:
                fields[key] = OPTIONAL_KEYS[key]
                continue
            if key not in stage and key not in defaults:
                raise ConfigError(f"missing key 'stages.{name}.{key}' "
                                  f"(set it there or under defaults)")
            values = _choices(where, stage.get(key, defaults.get(key)))
            fields[key] = tuple(_check_stage_choice(where, key, v) for v in values)
        stages.append(StageChoices(**fields))
    name = data.get("name", "space")
    return SearchSpace(name=str(name), deployment=deployment, width=width, stages=tuple(stages),
                       description=str(data.get("description", "")))


def shipped_spaces() -> dict[str, Any]:
    """The spaces that ship inside the package (`ghostsearch/spaces/*.yaml`), by name."""
    root = resources.files("ghostsearch") / "spaces"
    return {p.name[:-5]: p for p in root.iterdir() if p.name.endswith(".yaml")}


def load_space(name_or_path: str | Path) -> SearchSpace:
    """Load a shipped space by name (`ghostnet`, `ghostnet_cifar`), or any YAML file by path."""
    path = Path(name_or_path)
    shipped = shipped_spaces()
    if path.exists():
        source, text, stem = str(path), path.read_text(), path.stem
    elif not path.suffix and str(name_or_path) in shipped:
        res = shipped[str(name_or_path)]
        source, text, stem = f"space {name_or_path!s}", res.read_text(), str(name_or_path)
    else:
        known = ", ".join(sorted(shipped))
        raise ConfigError(f"space {str(name_or_path)!r}: no such file (shipped spaces: {known})")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: not valid YAML ({str(e).splitlines()[0]})") from None
    if isinstance(data, dict):
        data.setdefault("name", stem)
    return space_from_dict(data, source=source)


@dataclass(frozen=True)
class Draws:
    """Points drawn by rejection, with what the rejection cost: `draws` random points were
    built and counted (analytically, from the config alone) to keep `len(points)`."""

    points: list[dict[str, Any]]
    draws: int
    seconds: float

    def summary(self) -> dict[str, Any]:
        return {"kept": len(self.points), "draws": self.draws,
                "seconds": round(self.seconds, 2)}


def sample_band(space: SearchSpace, n: int, seed: int, *, low_flops: int | None = None,
                high_flops: int | None = None, exclude: Any = (), max_tries: int = 200_000,
                accept: Any = None) -> Draws:
    """`n` distinct points drawn uniformly from the part of the space whose FLOPs lie in
    [`low_flops`, `high_flops`] (rejection sampling with the analytic counter, so nothing
    outside the band is ever built as a model or trained), that are not in `exclude` (configs)
    and for which `accept(config)`, if given, is true."""
    import time


    start = time.perf_counter()
    rng = random.Random(seed)
    skip = set(exclude)
    found: dict[NetConfig, dict[str, Any]] = {}
    if n <= 0:
        return Draws([], 0, 0.0)
    for tries in range(1, max_tries + 1):
        params = space.random_params(rng)
        cfg = space.build_config(params)
        if cfg in found or cfg in skip:
            continue
        flops = analytic_counts(cfg).flops if (low_flops or high_flops) else 0
        within = ((high_flops is None or flops <= high_flops)
                  and (low_flops is None or flops >= low_flops))
        if within and (accept is None or accept(cfg)):
            found[cfg] = params
            if len(found) == n:
                return Draws(list(found.values()), tries, time.perf_counter() - start)
    band = (f"between {low_flops / 1e6:g} and {high_flops / 1e6:g} MFLOPs"
            if low_flops and high_flops else "within the budget")
    raise ConfigError(f"only {len(found)} of {n} distinct architectures of space "
                      f"{space.name!r} found {band} in {max_tries} samples; widen the band "
                      "(--band) or ask for fewer")


def sample_points(space: SearchSpace, n: int, seed: int, *, budget_flops: int | None = None,
                  max_tries: int = 200_000,
                  accept: Any = None) -> list[dict[str, Any]]:
    """`n` distinct points drawn uniformly from the space, kept when within `budget_flops`
    (counted from the config alone, so nothing over budget is ever built) and when
    `accept(config)`, if given, is true."""
    return sample_band(space, n, seed, high_flops=budget_flops, max_tries=max_tries,
                       accept=accept).points
