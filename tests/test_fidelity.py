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
