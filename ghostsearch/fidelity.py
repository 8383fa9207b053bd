"""How well a short proxy ranks architectures: the same candidates trained with the proxy and
with a longer schedule, compared by rank correlation, beside the noise of the seeds."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from .config import ConfigError, NetConfig
from .counting import analytic_counts
from .data import Dataset
from .latency_table import random_params
from .proxy import ProxyProtocol, proxy_config, train_proxy
from .space import SearchSpace


def sample_within_budget(space: SearchSpace, budget_flops: int, n: int, seed: int,
                         max_tries: int = 100_000) -> list[NetConfig]:
    """`n` distinct random architectures of the space within the budget (rejection sampling
    with the analytic counter, so nothing over budget is built)."""
    rng = random.Random(seed)
    found: dict[NetConfig, None] = {}
    for _ in range(max_tries):
        cfg = space.build_config(random_params(space, rng))
        if analytic_counts(cfg).flops <= budget_flops:
            found.setdefault(cfg)
            if len(found) == n:
                return list(found)
    raise ConfigError(f"only {len(found)} of {n} architectures found within the budget in "
                      f"{max_tries} samples; raise the budget")


def rank_correlations(a: pd.Series, b: pd.Series) -> dict[str, float | None]:
    """Kendall tau-b and Spearman rho of two paired series. Spearman is Pearson on average
    ranks (pandas alone); Kendall needs scipy and is None without it (the GPU image may
    lack it), so that a missing library never loses a finished measurement."""
    a, b = pd.Series(np.asarray(a, dtype=float)), pd.Series(np.asarray(b, dtype=float))
    try:
        kendall = float(a.corr(b, method="kendall"))
    except ImportError:
        kendall = None
    return {"kendall": kendall, "spearman": float(a.rank().corr(b.rank()))}


def proxy_fidelity(configs: list[NetConfig], data: Dataset, proxy: ProxyProtocol,
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
