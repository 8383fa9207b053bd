"""Deployment checks of an exported network: onnxruntime against PyTorch, CPU latency of
the file (median and p90 at a fixed thread count), int8 static quantisation calibrated on
training images, and the file's top-1 accuracy on a test split (the `deploy` extra)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .arch.onnx_export import (
    PREPROCESSING_KEY,
    export_onnx,
    onnx_preprocessing,
    random_input,
    require_deploy,
)
from .errors import require
from .latency.onnxrt import network_latency, quantize, session
from .train.data import DeviceLoader, Split

__all__ = ["PREPROCESSING_KEY", "check_onnx", "export_onnx", "onnx_accuracy", "onnx_latency",
           "onnx_preprocessing", "quantize_onnx", "require_deploy"]


def check_onnx(model: nn.Module, path: str | Path, resolution: int, batch: int = 2) -> float:
    """Largest absolute difference between PyTorch and onnxruntime logits on random input."""
    x = random_input(model, resolution, batch)
    with torch.no_grad():
        expected = model.eval()(x).numpy()
    got = session(path, 1).run(None, {"input": x.numpy()})[0]
    return float(np.abs(got - expected).max())


def onnx_latency(path: str | Path, resolution: int, *, runs: int = 50, warmup: int = 5,
                 threads: int = 1, batch: int = 1, in_channels: int = 3) -> dict[str, float]:
    """onnxruntime CPU latency in ms over `runs` after `warmup`, at a fixed thread count."""
    x = np.random.default_rng(0).standard_normal(
        (batch, in_channels, resolution, resolution)).astype(np.float32)
    median, p90 = network_latency(path, threads, runs=runs, warmup=warmup, inputs={"input": x})
    return {"median_ms": median, "p90_ms": p90, "runs": runs, "threads": threads,
            "batch": batch}


def _batches(split: Split, mean: Sequence[float], std: Sequence[float],
             batch: int) -> DeviceLoader:
    """Un-augmented float32 batches of `split` as the model takes them (`mean`, `std` on the
    0-1 scale of the preprocessing record)."""
    return DeviceLoader(split, batch, tuple(m * 255 for m in mean), tuple(s * 255 for s in std),
                        train=False)


def quantize_onnx(path: str | Path, out: str | Path, calibration: Split,
                  mean: Sequence[float], std: Sequence[float]) -> Path:
    """`path` quantised statically to int8 (QDQ, per-channel weights) with activation ranges
    from the `calibration` images, written to `out` with the same metadata."""
    import tempfile

    onnx = require("onnx", "deploy", "int8 quantisation")
    model = onnx.load(str(path))
    batches = [x.contiguous().numpy() for x, _ in _batches(calibration, mean, std, 32)]
    with tempfile.TemporaryDirectory() as tmp:
        q = quantize(model, batches, tmp)
    del q.metadata_props[:]
    q.metadata_props.extend(model.metadata_props)  # the preprocessing stays with the model
    out = Path(out)
    onnx.save(q, str(out))
    return out


def onnx_accuracy(path: str | Path, split: Split, mean: Sequence[float], std: Sequence[float],
                  *, threads: int = 1, batch: int = 500) -> float:
    """Top-1 accuracy in % of the ONNX model at `path` on `split`."""
    sess = session(path, threads)
    correct = 0
    for x, y in _batches(split, mean, std, batch):
        logits = sess.run(None, {"input": x.contiguous().numpy()})[0]
        correct += int((logits.argmax(1) == y.numpy()).sum())
    return 100.0 * correct / max(1, len(split))
