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


def precision_at_top(predicted: Any, truth: Any, fraction: float = 0.1) -> float:
    """Of the top `fraction` by `predicted` (at least one), the share that are in the top
    `fraction` by `truth`: how often a ranking's picks are truly among the best."""
    p, t = np.asarray(predicted, dtype=float), np.asarray(truth, dtype=float)
    k = max(1, int(np.ceil(fraction * len(p))))
    top_p = set(np.argsort(-p, kind="stable")[:k].tolist())
    top_t = set(np.argsort(-t, kind="stable")[:k].tolist())
    return len(top_p & top_t) / k


def ranking_metrics(predicted: Any, truth: Any, *, boot: int = 1000,
                    seed: int = 0) -> dict[str, float]:
    """Kendall tau, Spearman rho and precision of the top 10%, each with a bootstrap 95%
    interval (architectures resampled with replacement, `boot` times)."""
    p, t = np.asarray(predicted, dtype=float), np.asarray(truth, dtype=float)

    def all_three(pp: np.ndarray, tt: np.ndarray) -> tuple[float, float, float]:
        r = rank_correlations(pp, tt)
        return r["kendall"], r["spearman"], precision_at_top(pp, tt)

    point = all_three(p, t)
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(boot):
        idx = rng.integers(0, len(p), len(p))
        if np.ptp(p[idx]) == 0 or np.ptp(t[idx]) == 0:
            continue  # a constant resample has no ranking
        draws.append(all_three(p[idx], t[idx]))
    lo, hi = (np.nanpercentile(np.array(draws), q, axis=0) for q in (2.5, 97.5))
    out: dict[str, float] = {}
    for i, key in enumerate(("kendall", "spearman", "top10")):
        out[key], out[f"{key}_lo"], out[f"{key}_hi"] = point[i], float(lo[i]), float(hi[i])
    return out
