"""How well a short proxy ranks architectures: the same candidates trained with the proxy and
with a longer schedule, compared by rank correlation, beside the noise of the seeds."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pandas as pd

from ghostsearch import ConfigError, NetConfig, analytic_counts
from ghostsearch.search.proxy import proxy_config
from ghostsearch.spaces.space import SearchSpace, sample_points
from ghostsearch.stats import rank_correlations
from ghostsearch.train.data import Dataset
from ghostsearch.train.loop import train_proxy
from ghostsearch.train.recipe import Recipe


def sample_within_budget(space: SearchSpace, budget_flops: int, n: int, seed: int,
                         max_tries: int = 100_000) -> list[NetConfig]:
    """`n` distinct random architectures of the space within the budget."""
    points = sample_points(space, n, seed, budget_flops=budget_flops, max_tries=max_tries)
    return [space.build_config(p) for p in points]


def proxy_fidelity(configs: list[NetConfig], data: Dataset, proxy: Recipe,
                   longer_factor: int = 4, *, seeds: int = 3, repeated: int = 2,
                   device: str = "cpu",
                   progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train every config with `proxy` and with `longer_factor` x its epochs; return the table,
    Kendall tau and Spearman rho between the two rankings (validation accuracy), and the seed
    noise (std over `seeds` seeds for the first `repeated` configs, under the proxy)."""
    if longer_factor < 2 or len(configs) < 3:
        raise ConfigError("need at least 3 architectures and a longer schedule factor >= 2")
    longer = dataclasses.replace(proxy, epochs=proxy.epochs * longer_factor)
    rows = []
    for i, cfg in enumerate(configs):
        pcfg = proxy_config(cfg, data, proxy)
        row = {"arch": i, "MFLOPs": analytic_counts(cfg).flops / 1e6, "code": cfg.short()}
        for name, protocol in (("proxy", proxy), ("longer", longer)):
            r = train_proxy(pcfg, data, protocol, seed=0, device=device, evaluate_test=False)
            row[f"{name}_val"], row[f"{name}_s"] = r.val_acc, r.train_seconds
            if progress:
                progress(f"arch {i}: {name} {r.val_acc:.2f}% in {r.train_seconds:.1f} s")
        rows.append(row)
    table = pd.DataFrame(rows)
    noise = []
    for i, cfg in enumerate(configs[:repeated]):
        pcfg = proxy_config(cfg, data, proxy)
        accs = [table.proxy_val[i]] + [
            train_proxy(pcfg, data, proxy, seed=s, device=device, evaluate_test=False).val_acc
            for s in range(1, seeds)]
        noise.append({"arch": i, "seeds": seeds, "mean": float(pd.Series(accs).mean()),
                      "std": float(pd.Series(accs).std())})
    corr = rank_correlations(table.proxy_val, table.longer_val)
    return {
        "table": table,
        "kendall_tau": corr["kendall"],
        "spearman_rho": corr["spearman"],
        "seed_noise": noise,
        "proxy_epochs": proxy.epochs, "longer_epochs": longer.epochs,
    }
