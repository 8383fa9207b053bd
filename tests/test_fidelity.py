from __future__ import annotations

import pytest

import benchmarks.fidelity as fid
from ghostsearch import ConfigError, analytic_counts
from ghostsearch.search.data import load_data
from ghostsearch.search.proxy import ProxyProtocol, ProxyResult
from ghostsearch.search.space import load_space


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
    result = fid.proxy_fidelity(cfgs, data, ProxyProtocol(epochs=2), 4, seeds=3, repeated=2)
    # the longer schedule keeps the proxy's ranking (ties included): perfect agreement
    assert result["kendall_tau"] == pytest.approx(1.0)
    assert result["spearman_rho"] == pytest.approx(1.0)
    assert result["longer_epochs"] == 8 and len(result["table"]) == 5
    assert [n["seeds"] for n in result["seed_noise"]] == [3, 3]
    assert result["seed_noise"][0]["std"] == pytest.approx(0.288675, rel=1e-4)
    assert calls.count((2, 0)) == 5 and calls.count((8, 0)) == 5 and len(calls) == 14
    with pytest.raises(ConfigError, match="at least 3 architectures"):
        fid.proxy_fidelity(cfgs[:2], data, ProxyProtocol(epochs=2))


def test_scores_against_a_ground_truth_table(tmp_path):
    import benchmarks.ground_truth as gt
    from benchmarks import gt_fidelity as gf
    from ghostsearch.search.data import load_data
    from ghostsearch.search.space import load_space, space_from_dict

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
    table = gf.fidelity_table(truth, scores, boot=50)
    assert set(table.method) == {"snip", "params", "flops"}
    assert table.kendall.between(-1, 1).all() and (table.cpu_s_per_arch >= 0).all()
    assert gf.plot_fidelity(table, tmp_path / "f.png", 7).stat().st_size > 0
    other = space_from_dict({**space.to_dict(), "width": [0.5, 1.0]}, "other")
    with pytest.raises(ConfigError, match="a ground truth of space 'ghostnet'"):
        gf.read_truth(tmp_path, other)
