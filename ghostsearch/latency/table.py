"""Latency prediction from a lookup table, so a search can refuse candidates over a latency
limit without building them.

A network is cut into ops, each with the context that decides its latency. On eager PyTorch an
op is the stem, a bottleneck (keyed by its input channels, input size and BlockConfig) or the
head. On onnxruntime an op is a kernel as the runtime runs it after fusion (a conv with its
folded BN and activation, keyed by input size, channels, kernel, stride and groups; a
concatenation, addition, product or pooling keyed by its shapes; see kernels.py), timed alone
inside the runtime. The table holds each op's measured latency on one device, runtime and
thread count at one deployment resolution. An op the table lacks is predicted by a
least-squares fit, per op family, of latency on the op's FLOPs (multiply-adds) and activation
size. The sum over ops misses per-network effects (call overhead, layout reorders between
kernels), so the table also stores a linear correction fitted on whole networks measured end
to end on the same runtime: a * sum + b on eager PyTorch, a * convolutions + c * other
kernels + b on onnxruntime (see `features`).

An onnxruntime float32 table is better built in context (`method="in-context"`,
`add_network_in_context`): each kernel's time is read from profiles of whole networks, with
the layout reorders that serve it (incontext.py); an unseen kernel is predicted by a
regression per kernel family at its input size, and the correction is a * sum + b * kernels
+ c (dispatch per node). Timed alone, kernels miss those reorders, which depend on their
neighbours.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..arch.config import NetConfig
from ..arch.counting import block_counts
from ..arch.layers import ConvBnAct, GhostBottleneck
from ..arch.reparam import RepGhostBottleneck, fuse
from ..errors import ConfigError
from ..provenance import write_atomic
from . import incontext, onnxrt
from .kernels import Kernel, network_kernels
from .measure import measure_latency, time_forward

FORMAT = "ghostsearch.LatencyTable"


@dataclass(frozen=True)
class Op:
    key: str
    family: str
    flops: int
    activations: int  # elements moved: a proxy for memory traffic
    kernel: Kernel | None = field(default=None, compare=False)  # onnxruntime ops


def kernel_ops(cfg: NetConfig) -> list[Op]:
    """The onnxruntime kernels of `cfg` as table ops, in execution order."""
    return [Op(k.key, k.family, k.macs, k.elements, k) for group in network_kernels(cfg)
            for k in group]


def _out(size: int, stride: int) -> int:
    return (size - 1) // stride + 1


def network_ops(cfg: NetConfig) -> list[Op]:
    """The ops of `cfg` at its deployment resolution, in order."""
    size = _out(cfg.resolution, cfg.stem_stride)
    ops = [Op(f"stem|{cfg.in_channels}|{cfg.stem_channels}|{cfg.stem_stride}|{cfg.resolution}",
              "stem", cfg.in_channels * cfg.stem_channels * 9 * size * size,
              cfg.stem_channels * size * size)]
    prev = cfg.stem_channels
    for b in cfg.blocks:
        shortcut = "id" if prev == b.out_channels and b.stride == 1 else "proj"
        family = f"block|s{b.stride}|se{int(b.se_ratio > 0)}|{shortcut}"
        out = _out(size, b.stride)
        ops.append(Op(f"block|{prev}|{size}|{b.short()}", family, block_counts(prev, b, size).flops,
                      b.expansion * size * size + b.out_channels * out * out))
        prev, size = b.out_channels, out
    head_flops = (prev * cfg.head_channels * size * size + cfg.head_channels * cfg.num_features
                  + cfg.num_features * cfg.num_classes)
    ops.append(Op(f"head|{prev}|{size}|{cfg.head_channels}|{cfg.num_features}|"
                  f"{cfg.num_classes}", "head", head_flops, cfg.head_channels * size * size))
    return ops


class _Stem(nn.Module):
    def __init__(self, cfg: NetConfig) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cfg.in_channels, cfg.stem_channels, 3, cfg.stem_stride, 1,
                              bias=False)
        self.bn = nn.BatchNorm2d(cfg.stem_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(x)))


class _Head(nn.Module):
    def __init__(self, prev: int, cfg: NetConfig) -> None:
        super().__init__()
        self.conv = ConvBnAct(prev, cfg.head_channels)
        self.conv_head = nn.Conv2d(cfg.head_channels, cfg.num_features, 1)
        self.classifier = nn.Linear(cfg.num_features, cfg.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x).mean((2, 3), keepdim=True)
        return self.classifier(torch.relu(self.conv_head(x)).flatten(1))


def _op_modules(cfg: NetConfig) -> list[tuple[Op, nn.Module, int, int]]:
    """(op, module, input channels, input size) for every op of `cfg`."""
    ops = network_ops(cfg)
    mods: list[tuple[Op, nn.Module, int, int]] = [(ops[0], _Stem(cfg), cfg.in_channels,
                                                   cfg.resolution)]
    size, prev = _out(cfg.resolution, cfg.stem_stride), cfg.stem_channels
    for op, b in zip(ops[1:-1], cfg.blocks, strict=True):
        block = fuse(RepGhostBottleneck(prev, b), inplace=True) if b.reparam else (
            GhostBottleneck(prev, b))  # what the deployed network runs
        mods.append((op, block, prev, size))
        prev, size = b.out_channels, _out(size, b.stride)
    mods.append((ops[-1], _Head(prev, cfg), prev, size))
    return mods


def _time_module(module: nn.Module, x: torch.Tensor, *, runs: int, warmup: int,
                 threads: int | None) -> float:
    """Median ms of `module(x)` on x's device, as measure_latency times it there: eager at
    `threads` threads on the CPU, a replayed CUDA graph on a GPU."""
    module = module.eval().to(x.device).to(memory_format=torch.channels_last)
    times, _, _ = time_forward(module, x, runs=runs, warmup=warmup, threads=threads)
    return float(np.median(times))


@dataclass
class LatencyTable:
    device: str  # device_name(): "cpu: <model> (...)" or "cuda: <GPU name>"
    torch: str
    threads: int | None  # CPU threads the table was measured at; None on CUDA
    resolution: int
    runtime: str = "eager"  # eager (PyTorch), onnxruntime or onnxruntime-int8
    entries: dict[str, float] = field(default_factory=dict)  # op key -> ms
    fits: dict[str, list[float]] = field(default_factory=dict)  # family -> [c0, c_flops, c_act]
    # end-to-end = correction . features(cfg): (a, b) on eager, a * sum + b; (a, c, b) on
    # onnxruntime, a * convs + c * other kernels + b (other kernels price the reorders too);
    # (a, b, c) in context, a * sum + b * kernels + c
    correction: tuple[float, ...] = (1.0, 0.0)
    # how onnxruntime kernels were timed: "alone" (each its own graph) or "in-context"
    # (profiled inside whole networks, with the reorders that serve them)
    method: str = "alone"
    # in-context times of each kernel over the networks profiled so far (not saved)
    samples: dict[str, list[float]] = field(default_factory=dict, repr=False, compare=False)

    @property
    def device_type(self) -> str:
        """Where this table's latencies are measured: "cpu" or "cuda"."""
        return self.device.split(":", 1)[0]

    def __post_init__(self) -> None:
        if self.runtime not in onnxrt.RUNTIMES:
            raise ConfigError(f"runtime={self.runtime!r}: choose one of "
                              f"{', '.join(onnxrt.RUNTIMES)}")
        if self.runtime != "eager" and self.device_type != "cpu":
            raise ConfigError("onnxruntime tables are measured on the CPU")
        if self.method not in ("alone", "in-context"):
            raise ConfigError(f"method={self.method!r}: choose alone or in-context")
        if self.method == "in-context" and self.runtime != "onnxruntime":
            raise ConfigError("kernels are timed in context on onnxruntime float32 only (an "
                              "int8 graph's quantise nodes are not attributed to kernels)")

    def describe(self) -> str:
        """What the table's figures mean, e.g. "onnxruntime float32, 1 thread, cpu: ..."."""
        runtime = {"eager": "eager PyTorch", "onnxruntime": "onnxruntime float32",
                   "onnxruntime-int8": "onnxruntime int8"}[self.runtime]
        threads = "" if self.threads is None else (
            f", {self.threads} thread{'s' if self.threads > 1 else ''}")
        return f"{runtime}{threads}, batch 1, {self.device}"

    def ops(self, cfg: NetConfig) -> list[Op]:
        """`cfg` cut into this table's ops: blocks on eager PyTorch, kernels on onnxruntime."""
        return network_ops(cfg) if self.runtime == "eager" else kernel_ops(cfg)

    # -- prediction -------------------------------------------------------------------------

    def op_ms(self, op: Op) -> float:
        if op.key in self.entries:
            return self.entries[op.key]
        if self.method == "in-context":
            coef = (self.fits.get(incontext.size_family(op.kernel))
                    or self.fits.get(incontext.family(op.kernel)) or self.fits.get("all"))
            if coef is None:
                raise ConfigError(f"latency table has no entry or fit for {op.family}")
            return max(0.0, float(np.dot(coef, incontext.features(op.kernel))))
        coef = self.fits.get(op.family) or self.fits.get("all")
        if coef is None:
            raise ConfigError(f"latency table has no entry or fit for {op.family}")
        return max(0.0, coef[0] + coef[1] * op.flops / 1e6 + coef[2] * op.activations / 1e6)

    def raw_ms(self, cfg: NetConfig) -> float:
        return sum(self.op_ms(op) for op in self.ops(cfg))

    def features(self, cfg: NetConfig) -> list[float]:
        """What the correction weighs: [sum of ops, 1] on eager PyTorch; [convolutions, other
        kernels, 1] on onnxruntime with kernels timed alone, since the layout reorders a
        network adds (timed in no kernel) sit around its tensor ops, so they grow with those
        ops and not with the convs; [sum, kernels, 1] in context, where the reorders are in
        the kernels' times and what is left is the runtime's dispatch per node."""
        if self.runtime == "eager":
            return [self.raw_ms(cfg), 1.0]
        ops = self.ops(cfg)
        if self.method == "in-context":
            return [sum(self.op_ms(op) for op in ops), float(len(ops)), 1.0]
        convs = sum(self.op_ms(op) for op in ops if op.family.startswith("conv"))
        return [convs, sum(self.op_ms(op) for op in ops) - convs, 1.0]

    def predict(self, cfg: NetConfig) -> float:
        """Predicted end-to-end latency of `cfg` in ms, without building it."""
        if cfg.resolution != self.resolution:
            raise ConfigError(f"the latency table is for {self.resolution}px, the config for "
                              f"{cfg.resolution}px; build a table at that resolution")
        features = self.features(cfg)
        return float(np.dot(self._correction(len(features)), features))

    def _correction(self, n: int) -> tuple[float, ...]:
        """The fitted correction, or before a fit the plain sum of the ops."""
        return self.correction if len(self.correction) == n else self._plain(n)

    def _plain(self, n: int) -> tuple[float, ...]:
        """The correction that leaves the sum of the ops as it is, for `n` features."""
        if self.method == "in-context":
            return (1.0,) + (0.0,) * (n - 1)
        return (1.0,) * (n - 1) + (0.0,)

    # -- measuring --------------------------------------------------------------------------

    def measure(self, cfg: NetConfig, *, runs: int = 50, warmup: int = 10,
                repeats: int = 1) -> tuple[float, float]:
        """(median, p90) ms of `cfg` end to end, batch 1, as this table's ops were measured:
        eager PyTorch (measure_latency), or the exported ONNX file in an onnxruntime session
        (float32, or int8 quantised statically) at the table's threads; of the least
        disturbed of `repeats` blocks of runs."""
        if self.runtime == "eager":
            lats = [measure_latency(cfg, device=self.device_type, runs=runs, warmup=warmup,
                                    threads=self.threads) for _ in range(repeats)]
            lat = min(lats, key=lambda x: x.median_ms)
            return lat.median_ms, lat.p90_ms
        path = onnxrt.network_onnx(cfg, int8=self.runtime == "onnxruntime-int8")
        return onnxrt.network_latency(path, self.threads or 1, runs=runs, warmup=warmup,
                                      repeats=repeats)

    # -- building ---------------------------------------------------------------------------

    def add_network(self, cfg: NetConfig, *, runs: int = 20, warmup: int = 3) -> None:
        """Measure every op of `cfg` the table does not hold yet."""
        if self.runtime != "eager":
            for op in self.ops(cfg):
                if op.key not in self.entries:
                    self.entries[op.key] = onnxrt.kernel_ms(
                        op.kernel, self.threads or 1, int8=self.runtime == "onnxruntime-int8",
                        runs=runs, warmup=warmup)
            return
        for op, module, in_ch, size in _op_modules(cfg):
            if op.key not in self.entries:
                x = torch.randn(1, in_ch, size, size, device=self.device_type).contiguous(
                    memory_format=torch.channels_last)
                self.entries[op.key] = _time_module(module, x, runs=runs, warmup=warmup,
                                                    threads=self.threads)

    def add_network_in_context(self, cfg: NetConfig, *, runs: int = 30,
                               warmup: int = 5) -> int:
        """Profile the exported network of `cfg` on onnxruntime and add each kernel's time in
        it (with the reorders that serve it) to the table; an entry is the median over the
        networks profiled so far. Returns how many kernels no runtime node was matched to."""
        if self.method != "in-context":
            raise ConfigError("add_network_in_context is for method='in-context' tables")
        nodes = onnxrt.network_nodes(onnxrt.network_onnx(cfg), self.threads or 1, runs=runs,
                                     warmup=warmup)
        ops = self.ops(cfg)
        times = incontext.attribute([op.kernel for op in ops], nodes)
        for op, ms in zip(ops, times, strict=True):
            if not np.isnan(ms):
                self.samples.setdefault(op.key, []).append(ms)
                self.entries[op.key] = float(np.median(self.samples[op.key]))
        return int(np.isnan(times).sum())

    def fit(self, measured: list[NetConfig], calibration: list[tuple[NetConfig, float]]) -> None:
        """Fit the per-family regressions on the ops of the `measured` networks, then the
        end-to-end correction (least squares on `features`) on (config, measured ms) pairs.

        Pairs whose ops were not measured calibrate the correction as the search uses it:
        mostly on ops predicted by the regressions, so their bias is corrected too."""
        by_family: dict[str, list[tuple[Op, float]]] = {}
        seen: dict[str, Op] = {}
        for cfg in measured:
            for op in self.ops(cfg):
                seen[op.key] = op
        self.fits = {}
        if self.method == "in-context":
            self._fit_in_context(seen)
        for key, op in seen.items():
            if key in self.entries and self.method == "alone":
                by_family.setdefault(op.family, []).append((op, self.entries[key]))
                by_family.setdefault("all", []).append((op, self.entries[key]))
        for family, rows in by_family.items():
            if len(rows) >= 3:
                X = np.array([[1.0, o.flops / 1e6, o.activations / 1e6] for o, _ in rows])
                y = np.array([ms for _, ms in rows])
                self.fits[family] = np.linalg.lstsq(X, y, rcond=None)[0].tolist()
        X = np.array([self.features(cfg) for cfg, _ in calibration])
        measured = np.array([ms for _, ms in calibration])
        if len(calibration) >= X.shape[1] and self.method == "in-context":
            # relative errors count alike for a 3 ms and a 15 ms network
            self.correction = tuple(float(c) for c in np.linalg.lstsq(
                X / measured[:, None], np.ones(len(measured)), rcond=None)[0])
        elif len(calibration) >= X.shape[1]:
            self.correction = tuple(float(c) for c in np.linalg.lstsq(X, measured,
                                                                     rcond=None)[0])
        else:  # too few networks to fit: the plain sum
            self.correction = self._plain(X.shape[1])

    # profiled occurrences a regression at one input size needs (else the family's is used)
    MIN_SIZE_FIT = 8

    def _fit_in_context(self, seen: dict[str, Op]) -> None:
        """Regressions of in-context time on `incontext.features`, per family and input size
        where the table holds enough kernels there, per family, and over everything."""
        groups: dict[str, list[tuple[Op, float]]] = {}
        for key, op in seen.items():
            if key in self.entries:  # every profiled occurrence: common kernels weigh more
                for ms in self.samples.get(key, [self.entries[key]]):
                    for name in (incontext.size_family(op.kernel), incontext.family(op.kernel),
                                 "all"):
                        groups.setdefault(name, []).append((op, ms))
        for name, rows in groups.items():
            if len(rows) >= (self.MIN_SIZE_FIT if "@" in name else 3):
                X = np.array([incontext.features(op.kernel) for op, _ in rows])
                y = np.array([ms for _, ms in rows])
                self.fits[name] = np.linalg.lstsq(X, y, rcond=1e-6)[0].tolist()

    # -- storage ----------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {"format": FORMAT, "version": 3, "device": self.device, "torch": self.torch,
                "runtime": self.runtime, "method": self.method, "threads": self.threads,
                "resolution": self.resolution,
                "correction": list(self.correction), "fits": self.fits,
                "entries": self.entries}
        write_atomic(path, json.dumps(data, indent=1) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> LatencyTable:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigError(f"{path}: not a readable latency table ({e})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ConfigError(f"{path}: not a {FORMAT} file (make one with "
                              "ghostsearch table)")
        return cls(device=data["device"], torch=data["torch"], threads=data["threads"],
                   resolution=data["resolution"], runtime=data.get("runtime", "eager"),
                   method=data.get("method", "alone"),
                   entries=dict(data["entries"]),
                   fits={k: list(v) for k, v in data["fits"].items()},
                   correction=tuple(data["correction"]))
