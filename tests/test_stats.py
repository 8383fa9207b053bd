from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from ghostsearch.stats import (
    Noise,
    compare,
    pooled_noise,
    precision_at_top,
    rank_ceiling,
    ranking_metrics,
    seeds_needed,
    size_free,
    welch,
)


def test_pooled_noise_is_the_anova_within_group_estimate():
    groups = {"a": [1.0, 2.0, 3.0], "b": [10.0, 14.0], "c": [5.0]}
    noise = pooled_noise(groups)
    assert noise.df == 3  # (3 - 1) + (2 - 1); one run adds nothing
    assert noise.sd == pytest.approx(math.sqrt((2.0 + 8.0) / 3))
    assert not pooled_noise({"a": [1.0], "b": [2.0]}).known


def test_interval_matches_the_pooled_t_test_and_widens_for_several_candidates():
    a, b = [70.0, 71.5, 72.0, 70.5], [68.0, 69.0, 70.5, 69.5]
    noise = pooled_noise([a, b])
    one = compare(a, b, noise)
    ci = sps.ttest_ind(a, b, equal_var=True).confidence_interval(0.95)
    assert one.low == pytest.approx(ci.low) and one.high == pytest.approx(ci.high)
    three = compare(a, b, noise, m=3)  # Bonferroni: each at 1 - 0.05 / 3
    assert three.half > one.half
    assert three.half == pytest.approx(sps.t.ppf(1 - 0.05 / 6, noise.df) / sps.t.ppf(0.975, 6)
                                       * one.half)


def test_verdicts_beats_loses_equivalent_inconclusive_one_seed():
    tight = Noise(0.2, 40)
    assert compare([71.0] * 3, [70.0] * 3, tight).verdict == "beats"
    assert compare([69.0] * 3, [70.0] * 3, tight).verdict == "loses to"
    eq = compare([70.05] * 6, [70.0] * 6, tight, margin=0.5)
    assert eq.verdict == "equivalent" and eq.equivalent
    wide = compare([70.3] * 3, [70.0] * 3, Noise(1.0, 4), margin=0.5)
    assert wide.verdict == "inconclusive" and not wide.equivalent
    assert wide.seeds_needed == seeds_needed(1.0, 1.0)
    assert compare([71.0], [70.0], Noise(math.nan, 0)).verdict == "one seed"
    assert math.isnan(compare([71.0], [70.0], Noise(math.nan, 0)).half)


def test_seeds_needed_grows_with_noise_and_reaches_the_power():
    n = seeds_needed(1.0, 1.0)
    assert seeds_needed(0.5, 1.0) < n < seeds_needed(2.0, 1.0)
    # at n seeds an arm, a true 1-point effect is found about 80% of the time (simulated)
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(2000):
        a, b = rng.normal(1.0, 1.0, n), rng.normal(0.0, 1.0, n)
        c = compare(list(a), list(b), pooled_noise([list(a), list(b)]))
        hits += c.verdict == "beats"
    assert 0.75 <= hits / 2000 <= 0.9


def test_welch_needs_spread_to_give_an_interval():
    diff, half = welch([70.0, 71.0, 72.0], [68.0, 68.5, 72.0])
    ci = sps.ttest_ind([70.0, 71.0, 72.0], [68.0, 68.5, 72.0], equal_var=False)
    assert half == pytest.approx((ci.confidence_interval().high - ci.confidence_interval().low)
                                 / 2)
    assert diff == pytest.approx(70.0 + 1.0 - 69.5)
    assert math.isnan(welch([65.0, 65.0], [64.0, 64.0])[1])  # no spread measures nothing


def test_ranking_metrics_with_top_20_precision():
    truth = list(range(20))
    perfect = ranking_metrics(truth, truth, boot=200, top=0.2)
    assert perfect["kendall"] == pytest.approx(1.0) and perfect["top20"] == 1.0
    assert perfect["kendall_lo"] == pytest.approx(1.0)
    reversed_ = ranking_metrics(truth[::-1], truth, boot=200, top=0.2)
    assert reversed_["kendall"] == pytest.approx(-1.0) and reversed_["top20"] == 0.0
    rng = np.random.default_rng(1)
    noisy = np.array(truth) + rng.normal(0, 5, 20)
    r = ranking_metrics(noisy, truth, boot=500, top=0.2)
    assert r["kendall_lo"] < r["kendall"] < r["kendall_hi"] and 0 < r["kendall"] < 1
    assert precision_at_top([5, 4, 3, 2, 1], [1, 2, 3, 4, 5], 0.4) == 0.0


def test_size_free_removes_the_log_flops_trend():
    flops = np.array([20e6, 50e6, 100e6, 150e6, 200e6])
    raw = np.array([0.5, -0.5, 0.0, 0.25, -0.25])
    extra = raw - np.polyval(np.polyfit(np.log(flops), raw, 1), np.log(flops))  # size-free part
    score = 3.0 * np.log(flops) + 1.0 + extra
    resid = size_free(score, flops)
    assert resid == pytest.approx(extra, abs=1e-9)
    assert abs(np.corrcoef(resid, np.log(flops))[0, 1]) < 1e-6
    # architectures of one size: only the mean goes (a line on a constant cannot be fitted)
    assert size_free([1.0, 2.0, 6.0], [5e6] * 3) == pytest.approx([-2.0, -1.0, 3.0])
    assert np.isnan(size_free([1.0, 2.0], [5e6, 6e6])).all()  # too few to fit


def test_rank_ceiling_follows_the_normal_theory_and_its_limits():
    rng = np.random.default_rng(3)
    observed = rng.normal(67.0, 1.5, 30)
    sd_obs = float(np.std(observed, ddof=1))
    noise = 0.7
    rho = math.sqrt(1 - noise ** 2 / sd_obs ** 2)  # correlation of truth and measurement
    expected = 2 / math.pi * math.asin(rho)  # Greiner's relation for a bivariate normal
    assert rank_ceiling(observed, noise, draws=3000) == pytest.approx(expected, abs=0.02)
    assert rank_ceiling(observed, 1e-9, draws=50) == pytest.approx(1.0)
    assert rank_ceiling(observed, sd_obs * 1.01, draws=50) == 0.0  # noise explains it all
    # more seeds an architecture (smaller noise of its mean) raise the ceiling
    one_seed = rank_ceiling(observed, noise, draws=1000)
    assert rank_ceiling(observed, np.full(30, noise / math.sqrt(3)), draws=1000) > one_seed
