"""A weight-sharing supernet of a GhostNet space: one set of weights whose sub-networks are
every architecture of the space (`weights`)."""

from __future__ import annotations

from .weights import SuperNet, Task, largest_params

__all__ = ["SuperNet", "Task", "largest_params"]
