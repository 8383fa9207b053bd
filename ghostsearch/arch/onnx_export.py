"""The deployed network as ONNX: export through torch.export with a dynamic batch, GhostNetV3
branches folded first, the preprocessing stored in the file's metadata (the `deploy` extra:
onnx, onnxscript, onnxruntime). Here, beside the model family, so that the latency tables
and the deployment checks share one export."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import require
from .reparam import fuse, is_fused


def random_input(model: nn.Module, resolution: int, batch: int) -> torch.Tensor:
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
    require_deploy()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    if not is_fused(model):
        model = fuse(model)
    batch = torch.export.Dim("batch", min=1, max=4096)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, (random_input(model, resolution, 2),), dynamo=True,
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
