"""Architecture configs: frozen dataclasses that hold resolved numbers, validated on creation.

A config stores absolute channel counts; the width multiplier exists only in
`reference_config(width)` and in search spaces. JSON is the canonical form (with a format tag
and version); YAML is read through `yaml.safe_load` into the same strict `from_dict`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError

FORMAT = "ghostsearch.NetConfig"
EXPORT_FORMAT = "ghostsearch.Architecture"
VERSION = 1
ATTENTION_CHOICES = ("none", "dfc")


def _check_int(path: str, value: Any, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{path}={value!r}: must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ConfigError(f"{path}={value}: must be >= {minimum}")
    return value


def _check_float(path: str, value: Any, lo: float, hi: float) -> float:
    """Accept ints too (YAML writes `0` for 0.0) but return a float, so round-trips compare."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{path}={value!r}: must be a number, got {type(value).__name__}")
    value = float(value)
    if not (math.isfinite(value) and lo <= value < hi):
        raise ConfigError(f"{path}={value}: must be in [{lo}, {hi})")
    return value


def _check_odd(path: str, value: Any) -> int:
    _check_int(path, value)
    if value % 2 == 0:
        raise ConfigError(f"{path}={value}: must be odd (so that padding keeps the size)")
    return value


def _strict_kwargs(cls: type, data: Any, path: str) -> dict[str, Any]:
    """Refuse non-mappings, unknown keys and missing required keys, naming the field."""
    if not isinstance(data, dict):
        raise ConfigError(f"{path or 'config'}: must be a mapping, got {type(data).__name__}")
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"{path + '.' if path else ''}{unknown[0]}: unknown key "
            f"(known: {', '.join(sorted(names))})"
        )
    required = [
        f.name
        for f in fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    missing = [n for n in required if n not in data]
    if missing:
        raise ConfigError(f"{path + '.' if path else ''}{missing[0]}: missing required key")
    return dict(data)


@dataclass(frozen=True)
class BlockConfig:
    """One Ghost bottleneck (paper Table 1 row), in absolute channels.

    `kernel` is the depthwise kernel k of the stride-2 `conv_dw` and of the projection shortcut;
    a stride-1 block with an identity shortcut has neither, so there k changes nothing.
    `attention="dfc"` adds GhostNetV2's DFC attention to the expansion Ghost module;
    `reparam=True` trains GhostNetV3's parallel branches, which `fuse` folds into one conv each
    for deployment (where the block then costs what a plain block costs).
    """

    kernel: int  # bottleneck depthwise kernel k
    expansion: int  # expansion ("mid") channels
    out_channels: int
    se_ratio: float = 0.0  # 0 disables squeeze-and-excite
    stride: int = 1
    ghost_ratio: int = 2  # s: 1/s of the maps come from the primary 1x1 conv
    cheap_kernel: int = 3  # d: depthwise kernel of the cheap operation
    attention: str = "none"  # "dfc": GhostNetV2's decoupled fully connected attention
    reparam: bool = False  # GhostNetV3's re-parameterisable training branches

    def __post_init__(self) -> None:
        _check_odd("kernel", self.kernel)
        _check_int("expansion", self.expansion)
        _check_int("out_channels", self.out_channels)
        object.__setattr__(self, "se_ratio", _check_float("se_ratio", self.se_ratio, 0.0, 1.0))
        _check_int("stride", self.stride)
        if self.stride not in (1, 2):
            raise ConfigError(f"stride={self.stride}: must be 1 or 2")
        _check_int("ghost_ratio", self.ghost_ratio, minimum=2)
        _check_odd("cheap_kernel", self.cheap_kernel)
        if self.attention not in ATTENTION_CHOICES:
            raise ConfigError(f"attention={self.attention!r}: must be one of "
                              f"{', '.join(ATTENTION_CHOICES)}")
        if not isinstance(self.reparam, bool):
            raise ConfigError(f"reparam={self.reparam!r}: must be true or false")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any, path: str = "") -> BlockConfig:
        kwargs = _strict_kwargs(cls, data, path)
        try:
            return cls(**kwargs)
        except ConfigError as e:
            raise ConfigError(f"{path}.{e}" if path else str(e)) from None

    def short(self) -> str:
        """Compact code for logs and table columns, e.g. `k5_e72_c40_s2_se0.25_g2_d3`."""
        se = f"_se{self.se_ratio:g}" if self.se_ratio > 0 else ""
        extra = ("_dfc" if self.attention == "dfc" else "") + ("_rep" if self.reparam else "")
        return (
            f"k{self.kernel}_e{self.expansion}_c{self.out_channels}_s{self.stride}{se}"
            f"_g{self.ghost_ratio}_d{self.cheap_kernel}{extra}"
        )


@dataclass(frozen=True)
class NetConfig:
    """A whole GhostNet-family network.

    `stages` groups the bottlenecks as timm's `blocks.0` .. `blocks.N-1` (a checkpoint's keys
    depend on that grouping); `head_channels` is the 1x1 conv after them (`blocks.N`, 960 at
    1.0x) and `num_features` the `conv_head` width (1280 in the paper, not width-scaled).
    `resolution` is the deployment input size that FLOPs and latency refer to.
    """

    stem_channels: int
    stages: tuple[tuple[BlockConfig, ...], ...]
    head_channels: int
    num_features: int = 1280
    num_classes: int = 1000
    resolution: int = 224
    stem_stride: int = 2
    dropout: float = 0.2
    in_channels: int = 3

    def __post_init__(self) -> None:
        _check_int("stem_channels", self.stem_channels)
        if not isinstance(self.stages, (tuple, list)) or not self.stages:
            raise ConfigError(f"stages={self.stages!r}: must be a non-empty list of stages")
        stages = []
        for i, stage in enumerate(self.stages):
            if not isinstance(stage, (tuple, list)) or not stage:
                raise ConfigError(f"stages[{i}]={stage!r}: must be a non-empty list of blocks")
            for j, block in enumerate(stage):
                if not isinstance(block, BlockConfig):
                    raise ConfigError(
                        f"stages[{i}][{j}]: must be a BlockConfig, got {type(block).__name__}"
                    )
            stages.append(tuple(stage))
        object.__setattr__(self, "stages", tuple(stages))
        _check_int("head_channels", self.head_channels)
        _check_int("num_features", self.num_features)
        _check_int("num_classes", self.num_classes, minimum=0)  # 0: pooled features
        _check_int("resolution", self.resolution)
        _check_int("stem_stride", self.stem_stride)
        if self.stem_stride not in (1, 2):
            raise ConfigError(f"stem_stride={self.stem_stride}: must be 1 or 2")
        object.__setattr__(self, "dropout", _check_float("dropout", self.dropout, 0.0, 1.0))
        _check_int("in_channels", self.in_channels)

    @property
    def blocks(self) -> tuple[BlockConfig, ...]:
        """All bottlenecks in order, flattened over stages."""
        return tuple(b for stage in self.stages for b in stage)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"format": FORMAT, "version": VERSION}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "stages":
                value = [[b.to_dict() for b in stage] for stage in value]
            d[f.name] = value
        return d

    @classmethod
    def from_dict(cls, data: Any) -> NetConfig:
        if not isinstance(data, dict):
            raise ConfigError(f"config: must be a mapping, got {type(data).__name__}")
        data = dict(data)
        fmt = data.pop("format", FORMAT)
        if fmt != FORMAT:
            raise ConfigError(f"format={fmt!r}: not a {FORMAT} (a model config file)")
        version = data.pop("version", VERSION)
        if version != VERSION:
            raise ConfigError(f"version={version!r}: this ghostsearch reads version {VERSION}")
        kwargs = _strict_kwargs(cls, data, "")
        raw_stages = kwargs["stages"]
        if not isinstance(raw_stages, list) or not raw_stages:
            raise ConfigError(f"stages={raw_stages!r}: must be a non-empty list of stages")
        stages = []
        for i, stage in enumerate(raw_stages):
            if not isinstance(stage, list) or not stage:
                raise ConfigError(f"stages[{i}]={stage!r}: must be a non-empty list of blocks")
            stages.append(
                tuple(BlockConfig.from_dict(b, f"stages[{i}][{j}]") for j, b in enumerate(stage))
            )
        kwargs["stages"] = tuple(stages)
        return cls(**kwargs)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str) -> NetConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"config: not valid JSON ({e})") from None
        return cls.from_dict(data)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str) -> NetConfig:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"config: not valid YAML ({str(e).splitlines()[0]})") from None
        return cls.from_dict(data)

    def short(self) -> str:
        """Compact code for logs: stem, then each stage's blocks joined by '+', then the head."""
        stages = "|".join("+".join(b.short() for b in stage) for stage in self.stages)
        return f"stem{self.stem_channels}s{self.stem_stride}|{stages}|head{self.head_channels}"


def _is_yaml(path: Path) -> bool:
    return path.suffix.lower() in (".yaml", ".yml")


def load_config(path: str | Path) -> NetConfig:
    """Read a NetConfig from a .json or .yaml file.

    Also reads the files that `ghostsearch` exports (`best_arch.json`), which wrap the config
    with metadata under the `config` key.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config file ({e.strerror})") from None
    try:
        data = yaml.safe_load(text) if _is_yaml(path) else json.loads(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        first = str(e).splitlines()[0]
        kind = "YAML" if _is_yaml(path) else "JSON"
        raise ConfigError(f"{path}: not valid {kind} ({first})") from None
    if isinstance(data, dict) and data.get("format") == EXPORT_FORMAT:
        data = data.get("config")
    try:
        return NetConfig.from_dict(data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def save_config(
    cfg: NetConfig, path: str | Path, metadata: dict[str, Any] | None = None
) -> Path:
    """Write `cfg` as JSON (or YAML by suffix); with `metadata`, as an exported architecture."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = cfg.to_dict()
    if metadata is not None:
        data = {"format": EXPORT_FORMAT, "version": VERSION, "config": data, "metadata": metadata}
    text = yaml.safe_dump(data, sort_keys=False) if _is_yaml(path) else json.dumps(data, indent=2)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text + ("" if text.endswith("\n") else "\n"))
    tmp.replace(path)  # atomic: a crash never leaves a half-written config
    return path


def read_preprocessing(path: str | Path) -> dict[str, Any] | None:
    """The preprocessing an exported architecture (best_arch.json) or a training record
    (record.json) carries: mean, std, input size, interpolation, crop and classes."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    meta = data.get("metadata") if isinstance(data.get("metadata"), dict) else data
    pre = meta.get("preprocessing")
    return pre if isinstance(pre, dict) else None
