from __future__ import annotations

import random

import numpy as np
import optuna
import pandas as pd
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial
from PIL import Image

from ghostsearch.report.frame import baseline_comparison, pareto_front, pareto_mask, trials_frame
from ghostsearch.report.render import write_report


def brute_force_front(points):
    on = []
    for i, (c, a) in enumerate(points):
        dominated = any(c2 <= c and a2 >= a and (c2 < c or a2 > a)
                        for j, (c2, a2) in enumerate(points) if j != i)
        on.append(not dominated)
    return on


def test_pareto_mask_matches_brute_force_with_ties_and_duplicates():
    rng = random.Random(0)
    for _ in range(200):
        n = rng.randint(1, 40)
        # few distinct values, so ties in cost, in accuracy and exact duplicates are common
        pts = [(rng.choice([10, 20, 30, 40]), rng.choice([50.0, 60.0, 70.0])) for _ in range(n)]
        assert pareto_mask(*zip(*pts, strict=True)).tolist() == brute_force_front(pts)


def test_pareto_mask_handcrafted():
    cost = [1, 1, 2, 2, 3, 0.5]
    acc = [5, 5, 5, 6, 6, 1]
    # duplicates (0, 1) both on; (2) equal accuracy at higher cost: dominated; (4) dominated by 3
    assert pareto_mask(cost, acc).tolist() == [True, True, False, True, False, True]
    assert pareto_mask([], []).tolist() == []


DIST = {"width": CategoricalDistribution([0.5, 0.75, 1.0])}


def _trial(number_state, flops, val, test=None, baseline=None, feasible=True, width=0.75,
           reason=None):
    attrs = {"flops": int(flops * 1e6), "params": 1_000_000, "feasible": feasible,
             "arch": f"arch{flops}", "seed": 1}
    if val is not None:
        attrs.update(val_acc=val, test_acc=test if test is not None else val - 1,
                     train_seconds=2.0, epochs_run=3, trained=True)
    if baseline:
        attrs["baseline"] = baseline
    if reason:
        attrs["reason"] = reason
    value = (val or 0.0) if number_state == TrialState.COMPLETE else None  # infeasible: 0.0
    return create_trial(state=number_state, value=value, params={"width": width},
                        distributions=DIST, user_attrs=attrs)


@pytest.fixture
def study():
    s = optuna.create_study(direction="maximize", study_name="demo")
    s.set_user_attr("settings", {"budget_flops": 150_000_000, "space": "ghostnet",
                                 "objectives": ["accuracy"], "protocol": {"epochs": 3},
                                 "data": {"name": "synthetic"}, "seed": 0})
    C = TrialState.COMPLETE
    for t in [
        _trial(C, 42.3, 70.0, baseline="GhostNet 0.5x", width=0.5),
        _trial(C, 141.2, 80.0, baseline="GhostNet 1.0x", width=1.0),
        _trial(C, 40.0, 72.0),  # dominates 0.5x
        _trial(C, 40.0, 72.0),  # duplicate of the above: also on the front
        _trial(C, 120.0, 79.0),  # best at or below 1.0x's FLOPs, but does not dominate it
        _trial(C, 130.0, 75.0),  # dominated
        _trial(C, 200.0, None, feasible=False, reason="over budget: 200 MFLOPs > 150M"),
        _trial(TrialState.PRUNED, 60.0, 50.0, reason="pruned after epoch 1"),
        _trial(TrialState.FAIL, 70.0, None, reason="TrainingDiverged: loss is nan"),
    ]:
        s.add_trial(t)
    return s


def test_trials_frame_keeps_every_trial_with_its_reason(study):
    df = trials_frame(study)
    assert len(df) == 9
    assert df.loc[6, "reason"].startswith("over budget") and df.loc[6, "feasible"] == False  # noqa: E712
    assert df.loc[8, "state"] == "FAIL" and "nan" in df.loc[8, "reason"]
    assert df.loc[0, "baseline"] == "GhostNet 0.5x"


def test_front_and_baseline_comparison(study):
    df = trials_frame(study)
    front = pareto_front(df)
    assert front.trial.tolist() == [2, 3, 4, 1]  # sorted by FLOPs, duplicates kept
    comp = baseline_comparison(df).set_index("baseline")
    half, one = comp.loc["GhostNet 0.5x"], comp.loc["GhostNet 1.0x"]
    assert half.dominated_by == "2, 3"
    assert half.best_found_trial == 2 and half.val_gain == pytest.approx(2.0)
    assert one.dominated_by == "" and one.best_found_trial == 4
    assert str(comp.best_found_trial.dtype) == "Int64"  # shown as 4, not 4.0
    assert one.val_gain == pytest.approx(-1.0) and one.test_gain == pytest.approx(-1.0)


def test_write_report_files_parse(study, tmp_path):
    files = write_report([study], tmp_path)
    trials = pd.read_csv(files["trials"])
    assert {"trial", "state", "baseline", "width", "s", "d", "k", "e", "n", "se", "MFLOPs",
            "params_M", "latency_ms", "val_acc", "test_acc", "train_s", "reason"} <= set(
        trials.columns)
    assert len(trials) == 9
    assert pd.read_csv(files["pareto"]).trial.tolist() == [2, 3, 4, 1]
    with Image.open(files["pareto_flops"]) as im:
        assert im.format == "PNG" and im.size[0] > 600
    assert "pareto_latency" not in files  # no latency measured
    md = files["md"].read_text()
    assert "## Pareto front" in md and "GhostNet 0.5x" in md and "150.00 MFLOPs" in md
    # the over-budget trial is COMPLETE to Optuna, but was never trained
    assert "states COMPLETE 6, FAIL 1, NOT TRAINED 1, PRUNED 1" in md
    assert len([ln for ln in md.splitlines() if "NOT TRAINED" in ln and "over budget" in ln]) == 1
    assert "\n- budget: 150.00 MFLOPs" in md and "\n- trials: 9 (" in md  # bullets
    page = files["html"].read_text()
    assert page.count("<table") == 3 and "data:image/png;base64," in page
    assert "TrainingDiverged" in page
    assert "<ul><li>budget: 150.00 MFLOPs" in page and "<li>trials: 9 (" in page
    assert "<li>- " not in page  # nothing of the Markdown leaks into the page


def test_text_renders_markdown_and_html_from_the_same_parts():
    from ghostsearch.report.render import Text

    text = Text((("item", "a <b>"), ("item", "c"), ("para", "x & y"), ("code", "k3_e8"),
                 ("item", "- not a bullet twice")))
    assert text.markdown() == "- a <b>\n- c\n\nx & y\n\n`k3_e8`\n\n- - not a bullet twice"
    assert text.html() == ("<ul><li>a &lt;b&gt;</li><li>c</li></ul><p>x &amp; y</p>"
                           "<p><code style='word-break:break-all'>k3_e8</code></p>"
                           "<ul><li>- not a bullet twice</li></ul>")


def test_report_merges_studies_and_draws_latency(study, tmp_path):
    other = optuna.create_study(direction="maximize", study_name="other")
    other.add_trial(_trial(TrialState.COMPLETE, 35.0, 74.0))
    t = _trial(TrialState.COMPLETE, 30.0, 60.0)
    t.user_attrs["latency_ms"] = 1.5
    other.add_trial(t)
    files = write_report([study, other], tmp_path)
    trials = pd.read_csv(files["trials"])
    assert set(trials.study) == {"demo", "other"}
    front = pd.read_csv(files["pareto"])
    assert ("other", 0) in set(zip(front.study, front.trial, strict=True))
    assert files["pareto_latency"].exists()


def test_report_script_reads_the_storage(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    url = f"sqlite:///{tmp_path / 'x.db'}"
    s = optuna.create_study(storage=url, study_name="x", direction="maximize")
    s.add_trial(_trial(TrialState.COMPLETE, 40.0, 70.0))
    root = Path(__file__).resolve().parent.parent
    r = subprocess.run([sys.executable, str(root / "scripts" / "report.py"), "--study-name", "x",
                        "--storage", url, "--out", str(tmp_path / "out")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out" / "report.html").exists()
    assert np.isclose(pd.read_csv(tmp_path / "out" / "pareto.csv").MFLOPs[0], 40.0)


def test_rank_correlations_by_hand():
    from ghostsearch.stats import rank_correlations

    # one discordant pair of six: tau = (5 - 1) / 6; rank differences 0, 1, -1, 0:
    # rho = 1 - 6 * 2 / (4 * 15)
    r = rank_correlations([1, 2, 3, 4], [1, 3, 2, 4])
    assert r["kendall"] == pytest.approx(4 / 6) and r["spearman"] == pytest.approx(0.8)
    assert rank_correlations([1, 2, 3], [3, 2, 1]) == {"kendall": -1.0, "spearman": -1.0}


def test_precision_at_top_and_bootstrap_intervals():
    from ghostsearch.stats import precision_at_top, ranking_metrics

    truth = list(range(20))  # top 10% = the two largest, 18 and 19
    assert precision_at_top(truth, truth) == 1.0
    assert precision_at_top([0] * 18 + [19, -1], truth) == 0.5  # picks 18 and 0
    assert precision_at_top(list(reversed(truth)), truth) == 0.0
    rng = np.random.default_rng(1)
    noisy = np.array(truth) + rng.normal(0, 4, 20)
    m = ranking_metrics(noisy, truth, boot=300)
    assert m["kendall_lo"] <= m["kendall"] <= m["kendall_hi"]
    assert m["spearman_lo"] <= m["spearman"] <= m["spearman_hi"] and m["kendall"] > 0.4
    assert m == ranking_metrics(noisy, truth, boot=300)  # seeded
