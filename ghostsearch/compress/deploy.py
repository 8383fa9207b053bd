"""Deployment export: ONNX through torch.export, checked against PyTorch with onnxruntime, CPU
latency of the exported model (median and p90, fixed thread count), int8 static quantisation
calibrated on training images, and top-1 accuracy of an ONNX file on a test split."""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import require
from ..train.data import DeviceLoader, Split


def _input(model: nn.Module, resolution: int, batch: int) -> torch.Tensor:
    cfg = getattr(model, "config", None)
    channels = getattr(cfg, "in_channels", 3)
    return torch.randn(batch, channels, resolution, resolution,
                       generator=torch.Generator().manual_seed(0))


PREPROCESSING_KEY = "ghostsearch.preprocessing"  # ONNX metadata_props entry (JSON)


def require_deploy() -> None:
    """Check the `deploy` extra up front, before any long work that ends in an export."""
    for module in ("onnx", "onnxscript", "onnxruntime"):
        require(module, "deploy", "ONNX export")


def export_onnx(model: nn.Module, path: str | Path, resolution: int,
                preprocessing: dict[str, Any] | None = None) -> Path:
    """Write `model` (eval mode) as ONNX with a dynamic batch dimension; `preprocessing` (mean,
    std, input size, interpolation, crop, classes) goes into the file's metadata, so that the
    model is never separated from the normalisation it expects. GhostNetV3 branches are folded
    first (in a copy): the file holds the deployed network."""
    from ..arch.reparam import fuse, is_fused

    require_deploy()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    if not is_fused(model):
        model = fuse(model)
    batch = torch.export.Dim("batch", min=1, max=4096)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, (_input(model, resolution, 2),), dynamo=True,
                                    input_names=["input"], output_names=["logits"],
                                    dynamic_shapes=({0: batch},), verbose=False)
    program.save(str(path))
    if preprocessing is not None:
        import onnx

        proto = onnx.load(str(path))
        entry = proto.metadata_props.add()
        entry.key, entry.value = PREPROCESSING_KEY, json.dumps(preprocessing)
        onnx.save(proto, str(path))
    return path


def onnx_preprocessing(path: str | Path) -> dict[str, Any] | None:
    """The preprocessing stored in an ONNX file by `export_onnx`, or None."""
    onnx = require("onnx", "deploy", "reading ONNX metadata")
    for entry in onnx.load(str(path), load_external_data=False).metadata_props:
        if entry.key == PREPROCESSING_KEY:
            return json.loads(entry.value)
    return None


def check_onnx(model: nn.Module, path: str | Path, resolution: int, batch: int = 2) -> float:
    """Largest absolute difference between PyTorch and onnxruntime logits on random input."""
    from ..latency.onnxrt import session

    x = _input(model, resolution, batch)
    with torch.no_grad():
        expected = model.eval()(x).numpy()
    got = session(path, 1).run(None, {"input": x.numpy()})[0]
    return float(np.abs(got - expected).max())


def onnx_latency(path: str | Path, resolution: int, *, runs: int = 50, warmup: int = 5,
                 threads: int = 1, batch: int = 1, in_channels: int = 3) -> dict[str, float]:
    """onnxruntime CPU latency in ms over `runs` after `warmup`, at a fixed thread count."""
    from ..latency.onnxrt import network_latency

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
    from ..latency.onnxrt import quantize

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
    from ..latency.onnxrt import session

    sess = session(path, threads)
    correct = 0
    for x, y in _batches(split, mean, std, batch):
        logits = sess.run(None, {"input": x.contiguous().numpy()})[0]
        correct += int((logits.argmax(1) == y.numpy()).sum())
    return 100.0 * correct / max(1, len(split))
