"""The trials of one or more studies as a pandas frame, their Pareto front, the rendered report
(md, html, png), the measured Pareto set of a latency-limited search, and exported configs."""

from __future__ import annotations

from .export import export_best, export_trial
from .frame import pareto_front, summary_table, trials_frame
from .render import write_report

__all__ = ["export_best", "export_trial", "pareto_front", "summary_table", "trials_frame",
           "write_report"]
