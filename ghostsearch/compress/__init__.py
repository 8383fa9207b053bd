"""Compression: Ghost modules in place of convolutions (`ghostify`) and the CIFAR model zoo
they are applied to; full training is `ghostsearch.train`, ONNX export and its checks
`ghostsearch.deploy`."""

from __future__ import annotations

from .ghostify import ghostify
from .zoo import MODELS, make_model

__all__ = ["MODELS", "ghostify", "make_model"]
