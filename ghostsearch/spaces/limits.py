"""What a candidate must satisfy before it is trained or scored: the FLOPs budget and the
latency limit (hard limits, recorded as Optuna constraints) and the band just under the limit
where the search looks.

A search at 200 MFLOPs chooses between architectures of about 200 MFLOPs: drawn uniformly, most
points of the space are far smaller (a median near 86 MFLOPs), and any ranker then mostly
measures size. The band keeps every candidate the search trains or scores in
[band x limit, limit]: on the latency limit when one is given, else on the FLOPs budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..arch.config import NetConfig
from ..arch.counting import analytic_counts
from ..errors import ConfigError
from ..latency.table import LatencyTable

DEFAULT_BAND = 0.85


@dataclass(frozen=True)
class Check:
    """One candidate against the limits. Constraint values follow Optuna's convention:
    feasible when every value is <= 0."""

    flops: int
    params: int
    latency_ms: float | None
    constraints: dict[str, float]  # hard limits: flops, latency
    band_gap: float  # how far below the band (<= 0: in the band)

    @property
    def within(self) -> bool:
        return all(v <= 0 for v in self.constraints.values())

    @property
    def in_band(self) -> bool:
        return self.within and self.band_gap <= 0

    def reasons(self, limits: Limits) -> str:
        out = []
        if self.constraints.get("flops", 0) > 0:
            out.append(f"over budget: {self.flops / 1e6:.2f} MFLOPs > "
                       f"{limits.budget_flops / 1e6:.2f}M")
        if self.constraints.get("latency", 0) > 0:
            out.append(f"over latency limit: {self.latency_ms:.2f} ms predicted > "
                       f"{limits.latency_ms:g} ms")
        if not out and self.band_gap > 0:
            out.append(f"below the band: {limits.describe_band()}")
        return "; ".join(out)


@dataclass(frozen=True)
class Limits:
    budget_flops: int | None = None
    latency_ms: float | None = None
    band: float = DEFAULT_BAND  # 0: anything under the limits
    table: Any = None  # a LatencyTable, needed with latency_ms

    def __post_init__(self) -> None:
        if not 0 <= self.band < 1:
            raise ConfigError(f"--band {self.band:g}: must be in [0, 1) (a fraction of the limit; "
                              "0 = anything under it)")
        if self.latency_ms is not None and self.table is None:
            raise ConfigError("--latency-ms needs --latency-table FILE (make one with "
                              "ghostsearch table)")

    @classmethod
    def of(cls, settings: Any, table: Any = None) -> Limits:
        """The limits of a SearchSettings (loads its latency table unless given)."""
        if table is None and settings.latency_table is not None:

            table = LatencyTable.load(settings.latency_table)
        return cls(settings.budget_flops, settings.latency_ms, settings.band, table)

    @property
    def band_on(self) -> str | None:
        """Which limit the band lies under: latency when a limit is given, else FLOPs."""
        if not self.band:
            return None
        if self.latency_ms is not None:
            return "latency"
        return "flops" if self.budget_flops is not None else None

    def check(self, cfg: NetConfig) -> Check:
        counts = analytic_counts(cfg)
        latency = self.table.predict(cfg) if self.table is not None else None
        constraints: dict[str, float] = {}
        if self.budget_flops is not None:
            constraints["flops"] = float(counts.flops - self.budget_flops)
        if self.latency_ms is not None:
            constraints["latency"] = float(latency - self.latency_ms)
        gap = 0.0
        if self.band_on == "flops":
            gap = self.band * self.budget_flops - counts.flops
        elif self.band_on == "latency":
            gap = self.band * self.latency_ms - latency
        return Check(counts.flops, counts.params, latency, constraints, float(gap))

    def in_band(self, cfg: NetConfig) -> bool:
        return self.check(cfg).in_band

    def flops_range(self) -> tuple[int | None, int | None]:
        """The FLOPs interval a candidate may lie in (a latency band is checked separately)."""
        low = (int(self.band * self.budget_flops) if self.band_on == "flops" else None)
        return low, self.budget_flops

    def describe_band(self) -> str:
        if self.band_on == "flops":
            return (f"[{self.band * self.budget_flops / 1e6:g}, {self.budget_flops / 1e6:g}] "
                    "MFLOPs")
        if self.band_on == "latency":
            return f"[{self.band * self.latency_ms:g}, {self.latency_ms:g}] ms predicted"
        return "anything under the limits"
