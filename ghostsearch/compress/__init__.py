"""Compression and deployment: Ghost modules in place of convolutions (`ghostify`), the CIFAR
model zoo, and ONNX export (the `deploy` extra); full training is `ghostsearch.train`."""

from __future__ import annotations

from .ghostify import ghostify
from .zoo import MODELS, make_model

__all__ = ["MODELS", "ghostify", "make_model"]
