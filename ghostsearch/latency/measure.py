"""Latency of a deployment model, measured as a deployment would run it.

What "latency" means per device (it decides which architectures look fast):
- cpu: eager PyTorch, eval mode, inference_mode, batch 1, a fixed and recorded thread count.
- cuda: the forward pass captured once as a CUDA graph and replayed, timed with CUDA events.
  Eager batch-1 GPU timing measures Python and kernel launches, not the network (on an H100,
  timm's ghostnet_100 took 5.9 ms eager but 0.76 ms replayed as a graph).
Every result carries the device name, torch version, dtype, batch and threads, and the spread
(median, p10, p90) over many runs after a warm-up, so figures from different machines are never
mixed up.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..arch.config import NetConfig
from ..arch.model import build_model
from ..arch.reparam import fuse, is_fused
from ..errors import ConfigError

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class Latency:
    median_ms: float
    p10_ms: float
    p90_ms: float
    runs: int
    batch: int
    resolution: int
    device: str  # e.g. "cpu: AMD EPYC (2 cores)" or "cuda: NVIDIA H100 80GB HBM3"
    mode: str  # "eager" or "cuda-graph"
    dtype: str
    threads: int | None
    torch: str

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):  # no /proc/cpuinfo (not Linux): keep platform's name
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name")), cpu)
    return f"cpu: {cpu} ({os.cpu_count()} logical cores)"


def _summary(times_ms: list[float]) -> tuple[float, float, float]:
    a = np.asarray(times_ms)
    return float(np.median(a)), float(np.percentile(a, 10)), float(np.percentile(a, 90))


def measure_latency(model_or_cfg: nn.Module | NetConfig, *, device: str = "cpu",
                    batch: int = 1, resolution: int | None = None, runs: int = 100,
                    warmup: int = 10, threads: int | None = 1,
                    dtype: str = "float32") -> Latency:
    """Median and spread of one forward pass of a deployment model, in milliseconds.

    Args:
        model_or_cfg: a NetConfig (built here) or a module; measured in eval mode.
        device: "cpu" or "cuda[:N]".
        threads: CPU threads, fixed for the measurement and restored after (None: leave as is).
        dtype: float32, or float16/bfloat16 (CUDA).
    """
    if runs < 1 or warmup < 0 or batch < 1:
        raise ConfigError("runs and batch must be >= 1 and warmup >= 0")
    if dtype not in DTYPES:
        raise ConfigError(f"dtype={dtype!r}: choose one of {', '.join(DTYPES)}")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={device}: CUDA is not available here")
    if dev.type == "cpu" and dtype != "float32":
        raise ConfigError("CPU latency is measured in float32")
    if isinstance(model_or_cfg, NetConfig):
        model = build_model(model_or_cfg, fused=True)
    else:  # what a deployment runs: GhostNetV3 branches folded (a copy, the caller's is kept)
        model = model_or_cfg if is_fused(model_or_cfg) else fuse(model_or_cfg)
    cfg = getattr(model, "config", None)
    res = resolution or (cfg.resolution if isinstance(cfg, NetConfig) else 224)
    channels = cfg.in_channels if isinstance(cfg, NetConfig) else 3
    was_training = model.training
    model = model.eval().to(dev, DTYPES[dtype]).to(memory_format=torch.channels_last)
    x = torch.randn(batch, channels, res, res, device=dev, dtype=DTYPES[dtype]).contiguous(
        memory_format=torch.channels_last)
    try:
        times, used_threads, mode = time_forward(model, x, runs=runs, warmup=warmup,
                                                 threads=threads)
        name = device_name(dev)
    finally:
        model.train(was_training)
    median, p10, p90 = _summary(times)
    return Latency(median, p10, p90, runs, batch, res, name, mode, dtype, used_threads,
                   torch.__version__)


def time_forward(model: nn.Module, x: torch.Tensor, *, runs: int, warmup: int,
                 threads: int | None = None) -> tuple[list[float], int | None, str]:
    """Milliseconds of each of `runs` passes of `model(x)` on x's device, timed as latency is
    defined there: eager at `threads` CPU threads (restored after), or a replayed CUDA graph.
    Returns the times, the threads used (None on CUDA) and the mode."""
    if x.device.type == "cuda":
        return time_cuda_graph(model, x, runs, warmup), None, "cuda-graph"
    old = torch.get_num_threads()
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        return time_cpu(model, x, runs, warmup), torch.get_num_threads(), "eager"
    finally:
        torch.set_num_threads(old)


@torch.inference_mode()
def time_cpu(model: nn.Module, x: torch.Tensor, runs: int, warmup: int) -> list[float]:
    """Milliseconds of each of `runs` forward passes after `warmup` untimed ones."""
    for _ in range(warmup):
        model(x)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        model(x)
        times.append((time.perf_counter() - t0) * 1e3)
    return times


@torch.inference_mode()
def time_cuda_graph(model: nn.Module, x: torch.Tensor, runs: int, warmup: int) -> list[float]:
    """Milliseconds of each of `runs` replays of `model(x)` captured as one CUDA graph, timed
    with CUDA events, after warm-up passes on a side stream (as capture requires)."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):  # warm-up on a side stream, as graph capture requires
        for _ in range(max(3, warmup)):
            model(x)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        model(x)
    for _ in range(warmup):
        graph.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(runs):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return times
