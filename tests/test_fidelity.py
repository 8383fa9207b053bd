from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import ghostsearch.bench.fidelity as fid
from ghostsearch import ConfigError, analytic_counts
from ghostsearch.spaces.space import load_space
from ghostsearch.stats import rank_ceiling
from ghostsearch.train.data import load_data
from ghostsearch.train.loop import ProxyResult
from ghostsearch.train.recipe import Recipe


def test_samples_are_distinct_and_within_budget():
    space = load_space("ghostnet")
    cfgs = fid.sample_within_budget(space, 100_000_000, 12, seed=0)
    assert len(set(cfgs)) == 12
    assert all(analytic_counts(c).flops <= 100_000_000 for c in cfgs)
    assert cfgs == fid.sample_within_budget(space, 100_000_000, 12, seed=0)
    with pytest.raises(ConfigError, match="within the budget"):
        fid.sample_within_budget(space, 9_000_000, 3, seed=0, max_tries=50)


def test_rank_correlation_and_seed_noise(monkeypatch):
    space = load_space("ghostnet")
    cfgs = fid.sample_within_budget(space, 150_000_000, 5, seed=1)
    data = load_data("synthetic", resolution=16, train_subset=64, val_size=40, progress=False)
    calls = []

    def fake_train(cfg, data, protocol, *, seed, device, evaluate_test):
        calls.append((protocol.epochs, seed))
        # accuracy grows with width, longer training adds a constant, seeds add +-0.5
        acc = cfg.stem_channels + protocol.epochs + (0.5 if seed % 2 else 0.0)
        return ProxyResult(val_acc=acc, test_acc=None, val_curve=[acc], train_seconds=1.0,
                           epochs_run=protocol.epochs)

    monkeypatch.setattr(fid, "train_proxy", fake_train)
    result = fid.proxy_fidelity(cfgs, data, Recipe(epochs=2), 4, seeds=3, repeated=2)
    # the longer schedule keeps the proxy's ranking (ties included): perfect agreement
    assert result["kendall_tau"] == pytest.approx(1.0)
    assert result["spearman_rho"] == pytest.approx(1.0)
    assert result["longer_epochs"] == 8 and len(result["table"]) == 5
    assert [n["seeds"] for n in result["seed_noise"]] == [3, 3]
    assert result["seed_noise"][0]["std"] == pytest.approx(0.288675, rel=1e-4)
    assert calls.count((2, 0)) == 5 and calls.count((8, 0)) == 5 and len(calls) == 14
    with pytest.raises(ConfigError, match="at least 3 architectures"):
        fid.proxy_fidelity(cfgs[:2], data, Recipe(epochs=2))


def test_scores_against_a_ground_truth_table(tmp_path):
    import ghostsearch.bench.ground_truth as gt
    from ghostsearch.bench import gt_fidelity as gf
    from ghostsearch.spaces.space import load_space, space_from_dict
    from ghostsearch.train.data import load_data

    space = load_space("ghostnet")
    archs = gt.plan(space, 100_000_000, 6, [0.5], second_seed=1)
    units = [gt.Unit(a["arch_id"], 0) for a in archs] + [gt.Unit(archs[0]["arch_id"], 1)]
    gt.write_plan(tmp_path, space, archs, units, {"budget_flops": 100_000_000})
    accs = [50.0, 61.0, 55.0, 58.0, 40.0, 66.0, 52.0, 47.0]  # 7 archs, then seed 1
    for unit, acc in zip(units, accs, strict=True):
        gt.append_row(tmp_path / "runs.csv", {
            "arch_id": unit.arch_id, "kind": "x", "name": unit.arch_id, "seed": unit.seed,
            "mflops": 1.0, "params": 1, "proxy_mflops": 1.0, "val_acc": acc, "test_acc": acc,
            "val_curve": "[]", "train_seconds": 1.0, "total_seconds": 1.0, "threads": 1,
            "finished_at": "now"})
    noise = gf.seed_noise(tmp_path)
    assert noise["architectures"][0]["test_acc"] == [50.0, 47.0]
    assert noise["architectures"][0]["spread"] == 3.0 and len(noise["architectures"]) == 1
    assert noise["pooled_sd"] == pytest.approx(4.5 ** 0.5)  # variance of (50, 47) is 4.5
    assert noise["val_pooled_sd"] == pytest.approx(4.5 ** 0.5)  # val_acc written alike
    assert noise["one_seed_difference_95"] == pytest.approx(1.96 * 3.0)
    truth = gf.read_truth(tmp_path, space)
    assert len(truth) == 7 and truth.set_index("arch_id").loc[
        archs[0]["arch_id"], "test_acc"] == (50.0 + 47.0) / 2  # two seeds averaged
    data = load_data("synthetic", resolution=16)
    scores = gf.score_table(tmp_path, list(truth.arch_id), ["snip", "params", "flops"], data)
    assert len(scores) == 7 * 3 and (tmp_path / "scores.csv").exists()
    again = gf.score_table(tmp_path, list(truth.arch_id), ["snip", "params", "flops"], data)
    # read back from the cache, nothing scored twice
    assert again.value.tolist() == scores.value.tolist()
    assert again.cpu_s.tolist() == scores.cpu_s.tolist()
    table = gf.fidelity_table(truth, gf.score_methods(scores), boot=50)
    assert set(table.method) == {"snip", "params", "flops"}
    assert (table.archs == 7).all()
    assert table.kendall.between(-1, 1).all() and (table.cpu_s_per_arch >= 0).all()
    assert gf.plot_fidelity(table, tmp_path / "f.png", 7).stat().st_size > 0
    other = space_from_dict({**space.to_dict(), "width": [0.5, 1.0]}, "other")
    with pytest.raises(ConfigError, match="a ground truth of space 'ghostnet'"):
        gf.read_truth(tmp_path, other)
    # the script end to end: every section carries the ceiling a perfect ranking can reach
    import json

    from ghostsearch.bench import proxy_fidelity as pf

    meta = json.loads((tmp_path / "protocol.json").read_text())
    meta["data"] = {"val_size": 64, "train_subset": None}
    (tmp_path / "protocol.json").write_text(json.dumps(meta))
    out = tmp_path / "fid.json"
    assert pf.main(["--ground-truth", str(tmp_path), "--data", "synthetic", "--resolution",
                    "16", "--scores", "params,flops", "--boot", "50", "--json", str(out)]) == 0
    whole = json.loads(out.read_text())["bands"]["all"]
    observed = truth.val_acc.to_numpy()
    assert whole["architectures"] == 7
    assert whole["ceiling_kendall"] == pytest.approx(rank_ceiling(
        observed, noise["val_pooled_sd"] / np.sqrt(truth.seeds.to_numpy())))


def test_cross_validated_ridge_learns_a_monotone_relation_out_of_fold():
    import numpy as np
    import pandas as pd

    from ghostsearch.bench import gt_fidelity as gf
    from ghostsearch.stats import rank_correlations

    rng = np.random.default_rng(0)
    f1, noise = rng.normal(size=30), rng.normal(size=30)
    idx = [f"a{i}" for i in range(30)]
    feats = pd.DataFrame({"useful": np.exp(f1), "noise": noise}, index=idx)  # scale-free
    target = pd.Series(60 + 3 * f1, index=idx)
    pred = gf.cv_predictions(feats, target)
    assert rank_correlations(pred, target)["kendall"] > 0.8
    # with only the noise feature, nothing is learnt: no better than chance
    pred_noise = gf.cv_predictions(feats[["noise"]], target)
    assert abs(rank_correlations(pred_noise, target)["kendall"]) < 0.3


def test_simulation_prescreens_with_a_cached_supernet(tmp_path):
    """`simulate_search.py --supernet TAG` adds the supernet's inherited-weight accuracies as a
    prescreen; one that ranks perfectly makes `supernet over all` pick each half's best."""
    import json

    import pandas as pd

    import ghostsearch.bench.ground_truth as gt
    from ghostsearch.bench import gt_fidelity as gf
    from ghostsearch.bench import simulate_search as sim
    from ghostsearch.spaces.space import load_space
    from ghostsearch.train.data import load_data

    space = load_space("ghostnet")
    archs = gt.plan(space, 100_000_000, 10, [], second_seed=0)
    gt.write_plan(tmp_path, space, archs, [gt.Unit(a["arch_id"], 0) for a in archs],
                  {"budget_flops": 100_000_000})
    accs = dict(zip([a["arch_id"] for a in archs], [50.0 + (7 * i) % 10 for i in range(10)],
                    strict=True))
    for a, acc in accs.items():
        gt.append_row(tmp_path / "runs.csv", {
            "arch_id": a, "kind": "sampled", "name": a, "seed": 0, "mflops": 1.0, "params": 1,
            "proxy_mflops": 1.0, "val_acc": acc, "test_acc": acc - 1, "val_curve": "[]",
            "train_seconds": 1.0, "total_seconds": 1.0, "threads": 1, "finished_at": "now"})
    gf.score_table(tmp_path, list(accs), ["flops"], load_data("synthetic", resolution=16))
    pd.DataFrame({"arch_id": list(accs), "supernet": "t-e1", "value": list(accs.values()),
                  "cpu_s": 2.0}).to_csv(tmp_path / "supernet.csv", index=False)
    # a proxy trained on 8 of the 10 (two seeds on two of them, so its noise is known): left
    # out whole, since a pick among missing values would be a pick of the gaps
    ids = list(accs)[:8] + list(accs)[:2]
    pd.DataFrame({"arch_id": ids, "variant": "3x500", "seed": [0] * 8 + [1] * 2,
                  "val_acc": [accs[a] + 0.5 * (i >= 8) for i, a in enumerate(ids)],
                  "cpu_seconds": 9.0}).to_csv(
        tmp_path / "proxies.csv", index=False)
    out = tmp_path / "sim.json"
    args = ["--ground-truth", str(tmp_path), "--screens", "flops", "--splits", "3",
            "--repeats", "5", "--json", str(out)]
    assert sim.main([*args, "--supernet", "t-e1"]) == 0
    result = json.loads(out.read_text())
    assert result["left_out_incomplete"] == ["proxy 3 ep x 500 img (8 of 10)"]
    table = pd.DataFrame(result["table"]).set_index("mode")
    assert not table.index.str.contains("proxy").any()
    best = table.loc["supernet (t-e1) over 5"]
    assert best.mean_rank == 1.0 and best.cpu_s == 5 * 2.0
    assert best.expected_val_acc == table.expected_val_acc.max()
    with pytest.raises(ConfigError, match="--supernet 'e9': no such tag in .*supernet.csv; "
                                          "score the table with scripts/proxy_fidelity.py"):
        sim.main([*args, "--supernet", "e9"])


def test_learning_curve_proxy_and_predictor_methods(tmp_path):
    import json

    import pandas as pd

    from ghostsearch.bench import gt_fidelity as gf

    ids = [f"s{i:03d}" for i in range(10)]
    pd.DataFrame({"arch_id": ids, "seed": 0, "test_acc": [50.0 + i for i in range(10)],
                  "train_seconds": 120.0,
                  "val_curve": [json.dumps([10.0 + i, 20.0 - i, 30.0, 40.0]) for i in range(10)]}
                 ).to_csv(tmp_path / "runs.csv", index=False)
    curves = gf.curve_methods(tmp_path, epochs=(1, 2, 6))
    assert set(curves) == {"long run, epoch 1 of 4", "long run, epoch 2 of 4"}  # 6 > 4 epochs
    values, cost, kind = curves["long run, epoch 2 of 4"]
    assert values["s003"] == 17.0 and kind == "learning curve"
    assert gf.cost_of(cost, ids) == 60.0  # half of 4 epochs of 120 s
    proxies = pd.DataFrame({"arch_id": ids * 2, "variant": ["2x500"] * 10 + ["1x500"] * 10,
                            "val_acc": list(range(10)) + [5.0] * 10,
                            "cpu_seconds": [2.0 + i for i in range(10)] * 2})
    methods = gf.proxy_methods(proxies)
    assert set(methods) == {"proxy 2 ep x 500 img", "proxy 1 ep x 500 img"}
    # choices are made on validation accuracy; test accuracy is only reported beside it
    truth = pd.DataFrame({"arch_id": ids, "val_acc": [50.0 + i for i in range(10)],
                          "test_acc": [49.0 + i for i in range(10)]})
    methods["flops"] = (pd.Series(range(10), index=ids, dtype=float), 0.0, "baseline")
    methods["params"] = (pd.Series(range(10)[::-1], index=ids, dtype=float), 0.0, "baseline")
    methods.update(gf.predictor_methods(truth, methods))
    assert "ridge(scores, params, FLOPs, proxy 2 ep x 500 img)" in methods
    # costs are the architectures' own: a band of the larger ones costs more than the table
    proxy_cost = methods["proxy 2 ep x 500 img"][1]
    assert gf.cost_of(proxy_cost, ids) == 6.5 and gf.cost_of(proxy_cost, ids[7:]) == 10.0
    assert gf.cost_of(proxy_cost, ["elsewhere"]) == 6.5  # no value there: the table's mean
    # a predictor costs the sum of its features' costs, architecture by architecture
    assert gf.cost_of(methods["ridge(scores, params, FLOPs)"][1], ids) == 0.0
    assert gf.cost_of(methods["ridge(scores, params, FLOPs, proxy 2 ep x 500 img)"][1],
                      ids[7:]) == 10.0
    table = gf.fidelity_table(truth, {**methods, **curves}, boot=20).set_index("method")
    assert table.loc["proxy 2 ep x 500 img", "kendall"] == pytest.approx(1.0)
    assert table.loc["long run, epoch 2 of 4", "kendall"] == pytest.approx(-1.0)
    assert "proxy 1 ep x 500 img" not in table.index  # a constant ranks nothing
    assert table.loc["proxy 2 ep x 500 img", "kendall_test"] == pytest.approx(1.0)
    assert table.loc["proxy 2 ep x 500 img", "top20"] == 1.0


@pytest.mark.parametrize("text, message", [
    ("2x", "--variants '2x': expected EPOCHSxIMAGES"),
    ("0x500", "--variants '0x500': epochs >= 1 and images between 1 and 1000"),
    ("1x5000", "--variants '1x5000': epochs >= 1"),
    (",", "--variants: give at least one"),
])
def test_proxy_variants_are_checked(text, message):
    from ghostsearch.bench.build_proxy_table import parse_variants

    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        parse_variants(text, 1000)
    assert [v.name for v in parse_variants("1x500, 4X1000", 1000)] == ["1x500", "4x1000"]


def test_proxy_table_trains_the_architectures_named_in_table_order():
    from ghostsearch.bench.build_proxy_table import select_archs

    ids = ["ref-0.50x", "s000", "s001", "b170-200-00", "b170-200-01", "b85-100-00"]
    assert select_archs(ids, "*") == ids
    assert select_archs(ids, "b85-*, b170-200-*") == ["b170-200-00", "b170-200-01", "b85-100-00"]
    assert select_archs(ids, "s001,ref-*") == ["ref-0.50x", "s001"]
    with pytest.raises(ConfigError, match="--archs 'b200-\\*' matches no architecture of the "
                                          "table; its ids look like ref-0.50x, s000, s001"):
        select_archs(ids, "b200-*")


def test_search_simulation_picks_and_costs():
    import pandas as pd

    from ghostsearch.bench.simulate_search import modes, simulate

    ids = [f"s{i:02d}" for i in range(20)]
    val = pd.Series([50.0 + i for i in range(20)], index=ids)
    test = val - 1.0
    values = pd.DataFrame({"perfect": range(20), "reversed": range(20)[::-1],
                           "proxy": range(20)}, index=ids, dtype=float)
    costs = {"perfect": 0.5, "reversed": 0.5, "proxy": 30.0}
    whole = simulate(values, costs, val, test, pool=20, top=1, screen="perfect", proxy=None,
                     repeats=50)
    assert whole["expected_val_acc"] == 69.0 and whole["expected_test_acc"] == 68.0
    assert whole["p_top20"] == 1.0 and whole["mean_rank"] == 1.0
    assert whole["cpu_s"] == 20 * 0.5 and whole["regret_val"] == 0.0
    worst = simulate(values, costs, val, test, pool=20, top=1, screen="reversed", proxy=None,
                     repeats=50)
    assert worst["expected_val_acc"] == 50.0 and worst["mean_rank"] == 20.0
    # the prescreen keeps the reversed score's top 5 (the worst 5); the proxy picks among them
    pre = simulate(values, costs, val, test, pool=20, top=5, screen="reversed", proxy="proxy",
                   repeats=50)
    assert pre["expected_val_acc"] == 54.0 and pre["cpu_s"] == 20 * 0.5 + 5 * 30.0
    one = simulate(values, costs, val, test, pool=1, top=1, screen=None, proxy="proxy",
                   repeats=4000, seed=1)
    assert abs(one["expected_val_acc"] - 59.5) < 0.5 and one["cpu_s"] == 30.0
    # a proxy drawn with its noise picks worse than the same proxy read without noise
    exact = simulate(values, costs, val, test, pool=20, top=20, screen=None, proxy="proxy",
                     repeats=300)
    noisy = simulate(values, costs, val, test, pool=20, top=20, screen=None, proxy="proxy",
                     noise={"proxy": 3.0}, repeats=300)
    assert exact["mean_rank"] == 1.0 < noisy["mean_rank"]
    grid = modes(20, ["perfect"], ["proxy"])
    names = [m["mode"] for m in grid]
    assert "random 10 + proxy" in names and "prescreen perfect 20->5 + proxy" in names
    assert "perfect over 10" in names and all(int(m["top"]) <= int(m["pool"]) for m in grid)


def test_out_of_sample_choice_measures_the_chosen_mode_on_the_other_half():
    import pandas as pd

    from ghostsearch.bench.simulate_search import modes, out_of_sample

    ids = [f"s{i:02d}" for i in range(16)]
    val = pd.Series([50.0 + i for i in range(16)], index=ids)
    values = pd.DataFrame({"good": range(16), "bad": range(16)[::-1], "proxy": range(16)},
                          index=ids, dtype=float)
    costs = {"good": 0.1, "bad": 0.1, "proxy": 10.0}
    grid = modes(8, ["good", "bad"], ["proxy"])
    table, chosen = out_of_sample(values, costs, val, val - 1, grid, noise={"proxy": 1.0},
                                  splits=3, repeats=50)
    assert len(chosen) == 6  # 3 splits x 2 directions
    assert set(table["mode"]) == {m["mode"] for m in grid}
    assert table.chosen_share.sum() == pytest.approx(1.0)
    by = table.set_index("mode")
    assert by.loc["good over 8", "mean_rank"] == 1.0  # a perfect score over the whole half
    assert by.loc["bad over 8", "mean_rank"] == 8.0
    assert not chosen.chosen.str.startswith("bad over").any()


def test_gain_over_the_reference_line():
    import pandas as pd

    from ghostsearch.bench.simulate_search import reference_gain

    truth = pd.DataFrame({
        "arch_id": ["r1", "r2", "a", "b", "c"],
        "kind": ["reference", "reference", "sampled", "sampled", "sampled"],
        "mflops": [40.0, 140.0, 90.0, 20.0, 200.0],
        "test_acc": [60.0, 70.0, 66.0, 58.0, 69.0]})
    gain = reference_gain(truth)
    assert gain.to_dict() == pytest.approx({"a": 1.0, "b": -2.0, "c": -1.0})


def test_retrain_units_take_the_references_and_the_best_sampled_by_validation():
    from ghostsearch.bench.ground_truth import Unit, retrain_units

    rows = [{"arch_id": "ref-1.00x", "kind": "reference", "seed": "0", "val_acc": "60.0"},
            {"arch_id": "s000", "kind": "sampled", "seed": "0", "val_acc": "55.0"},
            {"arch_id": "s001", "kind": "sampled", "seed": "0", "val_acc": "70.0"},
            {"arch_id": "s002", "kind": "sampled", "seed": "0", "val_acc": "65.0"},
            {"arch_id": "s000", "kind": "sampled", "seed": "1", "val_acc": "90.0"}]  # not seed 0
    assert retrain_units(rows, 2, 3) == [Unit(a, s) for a in ("ref-1.00x", "s001", "s002")
                                         for s in range(3)]
    assert retrain_units(rows, 0, 2) == [Unit("ref-1.00x", 0), Unit("ref-1.00x", 1)]
    with pytest.raises(ConfigError, match="only 3 sampled architectures"):
        retrain_units(rows, 4, 3)
    with pytest.raises(ConfigError, match="need top >= 0 and seeds >= 1"):
        retrain_units(rows, 1, 0)


@pytest.mark.slow
def test_ground_truth_script_retrains_the_best_with_more_seeds_and_resumes(
        tmp_path, monkeypatch):
    import csv
    import json

    from ghostsearch.bench.build_ground_truth import main

    monkeypatch.setenv("GHOSTSEARCH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "gt"
    args = ["--data", "synthetic", "--data-dir", str(tmp_path), "--out", str(out),
            "--budget", "100MFLOPs", "--archs", "2", "--second-seed", "0", "--epochs", "1",
            "--train-subset", "64", "--val-size", "32", "--workers", "1",
            "--retrain-top", "1", "--retrain-seeds", "2"]
    assert main(args) == 0
    rows = list(csv.DictReader((out / "runs.csv").open()))
    refs = sorted({r["arch_id"] for r in rows if r["kind"] == "reference"})
    seed0 = {r["arch_id"]: float(r["val_acc"]) for r in rows if r["seed"] == "0"}
    best = min((a for a in seed0 if a.startswith("s")), key=lambda a: (-seed0[a], a))
    twice = sorted(r["arch_id"] for r in rows if r["seed"] == "1")
    assert twice == sorted(refs + [best])  # references and the best sample, each one more seed
    assert len(rows) == len(refs) + 2 + len(twice)
    planned = json.loads((out / "protocol.json").read_text())["units"]
    assert len(planned) == len(rows)  # the retraining units are recorded for a resume
    assert main(args) == 0  # a rerun trains nothing more
    assert len(list(csv.DictReader((out / "runs.csv").open()))) == len(rows)


def test_against_reference_gives_the_confirm_verdict_over_seeds():
    import math

    from ghostsearch.bench.ground_truth import against_reference

    def row(arch, seed, acc, mflops):
        return {"arch_id": arch, "name": arch, "seed": str(seed), "test_acc": str(acc),
                "mflops": str(mflops)}

    rows = [row("ref-1.20x", s, a, 197.96) for s, a in enumerate((67.0, 68.0, 69.0))]
    rows += [row("s033", s, a, 199.84) for s, a in ((1, 71.0), (0, 70.0), (2, 72.0))]
    [r] = against_reference(rows, ["s033"], "ref-1.20x")
    assert r["test_acc"] == [70.0, 71.0, 72.0]  # in seed order
    assert r["diff"] == pytest.approx(3.0)
    assert r["ci_half"] == pytest.approx(2.776445 * math.sqrt(2 / 3), rel=1e-5)
    # the noise pooled over both arms (sd 1, 4 degrees of freedom), one comparison
    assert r["verdict"] == "beats ref-1.20x (198 MFLOPs) by 3.00 ± 2.27 points at 200 MFLOPs"


def test_band_extension_fills_each_band_once_and_plans_seed_zero_first(tmp_path):
    import json

    from ghostsearch.bench.ground_truth import Band, Unit, extend_plan, plan, read_plan, write_plan

    space = load_space("ghostnet")
    archs = plan(space, 200_000_000, 6, [0.5], second_seed=1)
    units = [Unit(a["arch_id"], 0) for a in archs]
    write_plan(tmp_path, space, archs, units, {"budget_flops": 200_000_000})
    in_band = [a for a in read_plan(tmp_path)["archs"] if a.startswith("s")
               and 170e6 <= analytic_counts(space.build_config(
                   next(x for x in archs if x["arch_id"] == a)["params"])).flops <= 200e6]

    band = Band.parse("170:200:4:2")
    added = extend_plan(tmp_path, space, [band, Band.parse("85:100:2")])
    new = [a for a in added if a.startswith("b170")]
    assert len(new) == 4 - len(in_band)  # the band's existing samples count
    cfgs = {a: json.loads((tmp_path / "configs" / f"{a}.json").read_text()) for a in added}
    for a in new:
        flops = analytic_counts(space.build_config(cfgs[a]["metadata"]["space_params"])).flops
        assert 170e6 <= flops <= 200e6
    assert "ref-0.80x" in added  # the widest reference within 100 MFLOPs; 1.2x is new too
    meta = read_plan(tmp_path)
    planned = [Unit(**u) for u in meta["units"]][len(units):]
    seeds = [u.seed for u in planned]
    assert seeds == sorted(seeds)  # every seed-0 unit before any extra seed
    assert [u.arch_id for u in planned if u.seed == 1 and u.arch_id.startswith("b")] == new[:2]
    assert meta["band_draws"][0]["kept"] == len(new)
    assert meta["band_draws"][0]["draws"] >= len(new)
    assert extend_plan(tmp_path, space, [band]) == []  # a rerun adds nothing
    assert read_plan(tmp_path)["units"] == meta["units"]
    with pytest.raises(ConfigError, match="expected LO:HI:N"):
        Band.parse("170-200")
    with pytest.raises(ConfigError, match="need 0 <= LO < HI"):
        Band.parse("200:170:3")


def test_a_killed_ground_truth_unit_resumes_from_its_last_epoch(tmp_path, monkeypatch):
    """The table's units run through confirm's trainer: an interrupted unit resumes from its
    checkpoint and writes the row an uninterrupted run writes."""
    import ghostsearch.bench.ground_truth as gt
    import ghostsearch.train.full as train

    space = load_space("ghostnet")
    archs = gt.plan(space, 100_000_000, 0, [0.5], second_seed=0)
    gt.write_plan(tmp_path, space, archs, [gt.Unit("ref-0.50x", 0)], {})
    monkeypatch.setattr(gt, "_worker_data", load_data("synthetic", train_subset=64, val_size=32,
                                                      seed=0, progress=False))
    proto = dataclasses.asdict(Recipe(epochs=3, batch_size=32))
    monkeypatch.setenv("GHOSTSEARCH_CACHE", str(tmp_path / "straight"))
    straight = gt.train_unit(str(tmp_path), "ref-0.50x", 0, proto)

    monkeypatch.setenv("GHOSTSEARCH_CACHE", str(tmp_path / "killed"))
    calls, evaluate = [], train.evaluate

    def killed_in_epoch_two(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return evaluate(*a, **k)

    monkeypatch.setattr(train, "evaluate", killed_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        gt.train_unit(str(tmp_path), "ref-0.50x", 0, proto)
    (folder,) = (tmp_path / "killed" / "units").iterdir()
    assert torch.load(folder / "last.pt", weights_only=False)["epoch"] == 1
    monkeypatch.setattr(train, "evaluate", evaluate)
    resumed = gt.train_unit(str(tmp_path), "ref-0.50x", 0, proto)
    for k in ("val_acc", "test_acc", "val_curve", "mflops", "params", "proxy_mflops"):
        assert resumed[k] == straight[k]
    assert not (folder / "last.pt").exists()  # the row keeps what matters


def test_network_features_sum_depth_average_numbers_and_share_categories():
    from ghostsearch.bench.design_space import network_features

    params = {"width": 1.2, "stage1.depth": 1, "stage2.depth": 3, "stage1.se": "none",
              "stage2.se": "all", "stage1.ghost_ratio": 2, "stage2.ghost_ratio": 4}
    assert network_features(params) == {
        "width": 1.2, "stage1.depth": 1.0, "stage2.depth": 3.0, "depth (total)": 4.0,
        "ghost_ratio (mean)": 3.0, "se = all (share)": 0.5, "se = none (share)": 0.5}


def test_choice_effects_find_an_effect_at_fixed_size_in_every_sample():
    """Accuracy grows with log FLOPs and falls with depth; a third feature is noise. Size is
    taken out first, so depth leads with the same sign in both samples, and FLOPs-like width
    (which only tracks size here) does not."""
    import pandas as pd

    from ghostsearch.bench.design_space import choice_effects

    rng = np.random.default_rng(0)
    n = 60
    mflops = rng.uniform(40, 240, n)
    depth = rng.integers(9, 20, n).astype(float)
    val = 40 + 5 * np.log(mflops) - 0.8 * depth + rng.normal(0, 0.5, n)
    ids = [f"a{i}" for i in range(n)]
    table = pd.DataFrame({"arch_id": ids, "val_acc": val, "mflops": mflops,
                          "sample": ["first"] * 30 + ["band"] * 30})
    feats = pd.DataFrame({"depth (total)": depth, "width": mflops ** 0.5,
                          "noise": rng.normal(size=n)}, index=ids)
    effects = choice_effects(table, feats).set_index("feature")
    assert list(effects.index)[0] == "depth (total)"
    assert effects.loc["depth (total)", "pooled rho"] < -0.8
    assert effects.loc["depth (total)", "first rho"] < -0.6
    assert effects.loc["depth (total)", "band rho"] < -0.6
    assert effects.loc["depth (total)", "same sign in every sample"]
    assert abs(effects.loc["width", "pooled rho"]) < 0.3
    assert abs(effects.loc["noise", "pooled rho"]) < 0.3


def test_a_subspace_check_compares_its_members_with_the_rest_at_fixed_size():
    import pandas as pd

    from ghostsearch.bench.design_space import subspace_check

    mflops = np.array([50.0, 100, 200, 50, 100, 200])
    val = 50 + 3 * np.log(mflops) + np.array([1.0, 1.0, 1.0, -1.0, -1.0, -1.0])
    table = pd.DataFrame({"arch_id": list("abcdef"), "val_acc": val, "mflops": mflops})
    inside = pd.Series([True, True, True, False, False, False], index=list("abcdef"))
    check = subspace_check(table, inside)
    assert (check["inside"], check["outside"]) == (3, 3)
    assert check["residual_difference"] == pytest.approx(2.0)
    assert check["val_acc_inside"] - check["val_acc_outside"] == pytest.approx(2.0)
    assert subspace_check(table, inside & False) == {"inside": 0, "outside": 6}
