"""Statistics that confirm, the reports and the benchmarks share: run-to-run noise pooled over
the arms of a comparison, intervals of differences adjusted for several candidates, verdict
words that mean what they say, the seeds a decision needs, and rank correlations with
bootstrap intervals.

Why pooled: with 3 seeds an arm Welch's test has about 2 degrees of freedom (t about 4.3), so
its 95% interval is about +-3 points when the effects worth finding are about 1 point. Runs of
one protocol on one data split share their noise whatever the architecture, so one estimate
pooled over every arm of a confirmation has many more degrees of freedom.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

LEVEL = 0.95
DEFAULT_MARGIN = 0.5  # points: equivalence margin of the two one-sided tests


@dataclass(frozen=True)
class Noise:
    """Run-to-run standard deviation pooled over groups (arms), with its degrees of freedom:
    the sum over arms of (runs - 1)."""

    sd: float
    df: int

    @property
    def known(self) -> bool:
        return self.df >= 1 and self.sd > 0


def pooled_noise(groups: Mapping[str, Sequence[float]] | Sequence[Sequence[float]]) -> Noise:
    """The pooled within-group standard deviation of `groups` (arms with one run add nothing)."""
    arms = list(groups.values()) if isinstance(groups, Mapping) else list(groups)
    ss = sum(sum((x - statistics.fmean(a)) ** 2 for x in a) for a in arms if len(a) > 1)
    df = sum(len(a) - 1 for a in arms if len(a) > 1)
    return Noise(math.sqrt(ss / df) if df else math.nan, df)


@dataclass(frozen=True)
class Comparison:
    """A candidate's mean minus the reference's, with the interval at `level` (adjusted for
    `m` comparisons, Bonferroni), the equivalence test at `margin`, and the verdict."""

    diff: float
    half: float  # half-width of the adjusted interval; nan when the noise is unknown
    df: int
    level: float
    m: int
    margin: float
    equivalent: bool
    seeds_needed: int | None  # seeds an arm that would decide a difference of `margin`...
    verdict: str  # beats / loses to / equivalent / inconclusive / one seed

    @property
    def low(self) -> float:
        return self.diff - self.half

    @property
    def high(self) -> float:
        return self.diff + self.half


def t_quantile(p: float, df: int) -> float:
    from scipy import stats

    return float(stats.t.ppf(p, df))


def compare(a: Sequence[float], b: Sequence[float], noise: Noise, *, m: int = 1,
            level: float = LEVEL, margin: float = DEFAULT_MARGIN,
            effect: float = 1.0) -> Comparison:
    """`a` (candidate runs) against `b` (reference runs) with the pooled `noise`.

    The interval is the t interval of the difference of means with the pooled standard
    deviation, at `level` adjusted for `m` candidates against one reference (Bonferroni:
    each at 1 - (1 - level) / m, so that all m hold together at `level`). The verdict:
    "beats" or "loses to" when that interval excludes 0; "equivalent within +-margin" when the
    two one-sided tests at the same adjusted level both reject (the 1 - 2 alpha interval lies
    inside +-margin); else "inconclusive", with the seeds per arm that would resolve a
    difference of `effect` points at this noise. One run on either side is "one seed"."""
    diff = statistics.fmean(a) - statistics.fmean(b)
    alpha = (1 - level) / m
    if not noise.known:
        verdict = "one seed" if min(len(a), len(b)) < 2 else "no noise estimate"
        return Comparison(diff, math.nan, noise.df, level, m, margin, False, None, verdict)
    se = noise.sd * math.sqrt(1 / len(a) + 1 / len(b))
    half = t_quantile(1 - alpha / 2, noise.df) * se
    half_tost = t_quantile(1 - alpha, noise.df) * se
    equivalent = diff - half_tost > -margin and diff + half_tost < margin
    need = seeds_needed(noise.sd, effect, m=m, level=level)
    if diff - half > 0:
        verdict = "beats"
    elif diff + half < 0:
        verdict = "loses to"
    elif equivalent:
        verdict = "equivalent"
    else:
        verdict = "inconclusive"
    return Comparison(diff, half, noise.df, level, m, margin, equivalent, need, verdict)


def seeds_needed(sd: float, effect: float, *, m: int = 1, level: float = LEVEL,
                 power: float = 0.8, max_seeds: int = 1000) -> int:
    """Seeds per arm for a two-arm comparison to detect a true difference of `effect` points
    with probability `power` at run-to-run noise `sd` (normal approximation, then the t
    quantiles of the pooled degrees of freedom of two such arms)."""
    from scipy import stats

    if effect <= 0 or not sd > 0:
        raise ValueError("effect and sd must be positive")
    alpha = (1 - level) / m
    for n in range(2, max_seeds + 1):
        df = 2 * (n - 1)
        t_a = stats.t.ppf(1 - alpha / 2, df)
        t_b = stats.t.ppf(power, df)
        if (t_a + t_b) * sd * math.sqrt(2 / n) <= effect:
            return n
    return max_seeds


def welch(a: Sequence[float], b: Sequence[float], level: float = LEVEL) -> tuple[float, float]:
    """Mean of a - b and the half-width of its Welch interval (nan with < 2 runs of either or
    no spread in both: a zero spread measures nothing, it is not an exact difference)."""
    from scipy import stats

    diff = statistics.fmean(a) - statistics.fmean(b)
    if len(a) < 2 or len(b) < 2 or (len(set(a)) == 1 and len(set(b)) == 1):
        return diff, math.nan
    ci = stats.ttest_ind(list(a), list(b), equal_var=False).confidence_interval(level)
    return diff, (ci.high - ci.low) / 2


# -- rankings ---------------------------------------------------------------------------------

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


def ranking_metrics(predicted: Any, truth: Any, *, boot: int = 1000, seed: int = 0,
                    top: float = 0.1) -> dict[str, float]:
    """Kendall tau, Spearman rho and precision of the top `top` fraction (key `top10` for
    0.1, `top20` for 0.2), each with a bootstrap 95% interval (architectures resampled with
    replacement, `boot` times)."""
    p, t = np.asarray(predicted, dtype=float), np.asarray(truth, dtype=float)

    def all_three(pp: np.ndarray, tt: np.ndarray) -> tuple[float, float, float]:
        r = rank_correlations(pp, tt)
        return r["kendall"], r["spearman"], precision_at_top(pp, tt, top)

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
    for i, key in enumerate(("kendall", "spearman", f"top{round(top * 100)}")):
        out[key], out[f"{key}_lo"], out[f"{key}_hi"] = point[i], float(lo[i]), float(hi[i])
    return out


def rank_ceiling(observed: Sequence[float], noise_sd: float | Sequence[float], *,
                 draws: int = 2000, seed: int = 0) -> float:
    """The Kendall tau a perfect ranking can expect against a truth measured with noise.

    Why: a ground truth of one seed an architecture is itself noisy, so even the true order
    ranks imperfectly against it, most of all in a narrow band where the architectures differ
    by about the noise. The true values are taken as normal with the observed variance less
    the noise's (`noise_sd` for every value, or one per value, e.g. sd / sqrt(seeds)); the
    result is the mean tau between true values and true values plus noise over `draws`
    simulated tables. 0.0 when the noise explains the whole spread."""
    from scipy import stats

    obs = np.asarray(observed, dtype=float)
    if len(obs) < 2:
        return 0.0
    noise = np.broadcast_to(np.asarray(noise_sd, dtype=float), obs.shape)
    var_true = float(np.var(obs, ddof=1) - np.mean(noise ** 2))
    if var_true <= 0:
        return 0.0
    rng = np.random.default_rng(seed)
    taus = []
    for _ in range(draws):
        true = rng.normal(0.0, math.sqrt(var_true), len(obs))
        taus.append(stats.kendalltau(true, true + rng.normal(0.0, noise)).statistic)
    return float(np.mean(taus))


def size_free(score: Sequence[float], flops: Sequence[float]) -> np.ndarray:
    """`score` made size-free: its residual after a least-squares line on log FLOPs (what the
    score says beyond the architecture's size)."""
    s = np.asarray(score, dtype=float)
    x = np.log(np.asarray(flops, dtype=float))
    ok = ~(np.isnan(s) | np.isnan(x))
    out = np.full_like(s, np.nan)
    if ok.sum() >= 3 and np.ptp(x[ok]) > 0:
        slope, intercept = np.polyfit(x[ok], s[ok], 1)
        out[ok] = s[ok] - (slope * x[ok] + intercept)
    elif ok.sum() >= 3:  # one size: nothing to remove but the mean (polyfit would divide by 0)
        out[ok] = s[ok] - s[ok].mean()
    return out
