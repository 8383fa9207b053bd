"""Latency: measured on a device, and predicted from a per-operator lookup table."""

from __future__ import annotations

from .measure import DTYPES, Latency, device_name, measure_latency
from .table import LatencyTable

__all__ = ["DTYPES", "Latency", "LatencyTable", "device_name", "measure_latency"]
