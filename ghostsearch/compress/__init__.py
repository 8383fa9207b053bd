"""Compression and deployment: Ghost modules in place of convolutions (`ghostify`), the CIFAR
model zoo, full training with checkpoints, and ONNX export (the `deploy` extra)."""

from __future__ import annotations

from .ghostify import ghostify
from .train import ModelSpec, train_full
from .zoo import MODELS, make_model

__all__ = ["MODELS", "ModelSpec", "ghostify", "make_model", "train_full"]
