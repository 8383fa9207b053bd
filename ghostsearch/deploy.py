"""Deployment export: ONNX through torch.export, checked against PyTorch with onnxruntime,
and CPU latency of the exported model (median and p90, fixed thread count)."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .config import ConfigError


def _input(model: nn.Module, resolution: int, batch: int) -> torch.Tensor:
    cfg = getattr(model, "config", None)
    channels = getattr(cfg, "in_channels", 3)
    return torch.randn(batch, channels, resolution, resolution,
                       generator=torch.Generator().manual_seed(0))


def export_onnx(model: nn.Module, path: str | Path, resolution: int) -> Path:
    """Write `model` (eval mode) as ONNX with a dynamic batch dimension."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    batch = torch.export.Dim("batch", min=1, max=4096)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, (_input(model, resolution, 2),), dynamo=True,
                                    input_names=["input"], output_names=["logits"],
                                    dynamic_shapes=({0: batch},), verbose=False)
    program.save(str(path))
    return path


def _session(path: str | Path, threads: int):
    try:
        import onnxruntime as ort
    except ImportError:
        raise ConfigError("onnxruntime is not installed: pip install onnxruntime") from None
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def check_onnx(model: nn.Module, path: str | Path, resolution: int, batch: int = 2) -> float:
    """Largest absolute difference between PyTorch and onnxruntime logits on random input."""
    x = _input(model, resolution, batch)
    with torch.no_grad():
        expected = model.eval()(x).numpy()
    got = _session(path, 1).run(None, {"input": x.numpy()})[0]
    return float(np.abs(got - expected).max())


def onnx_latency(path: str | Path, resolution: int, *, runs: int = 50, warmup: int = 5,
                 threads: int = 1, batch: int = 1, in_channels: int = 3) -> dict[str, float]:
    """onnxruntime CPU latency in ms over `runs` after `warmup`, at a fixed thread count."""
    sess = _session(path, threads)
    x = np.random.default_rng(0).standard_normal(
        (batch, in_channels, resolution, resolution)).astype(np.float32)
    for _ in range(warmup):
        sess.run(None, {"input": x})
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, {"input": x})
        times.append((time.perf_counter() - t0) * 1e3)
    return {"median_ms": float(np.median(times)), "p90_ms": float(np.percentile(times, 90)),
            "runs": runs, "threads": threads, "batch": batch}
