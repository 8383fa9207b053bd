"""How well one ranking agrees with another (a proxy with a longer training, a predicted
latency with a measured one)."""

from __future__ import annotations

from typing import Any

import numpy as np


def rank_correlations(a: Any, b: Any) -> dict[str, float]:
    """Kendall tau-b and Spearman rho of two paired sequences."""
    from scipy import stats

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return {"kendall": float(stats.kendalltau(a, b).statistic),
            "spearman": float(stats.spearmanr(a, b).statistic)}
