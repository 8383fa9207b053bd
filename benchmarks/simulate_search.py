"""Search modes simulated on a ground-truth table, as tabular NAS benchmarks do: each mode is
run many times on random draws from the table's uniform sample, with every cached ranking
signal (training-free scores, short proxies from `scripts/build_proxy_table.py`, the long
run's early epochs) standing in for what the search would have computed. Reported per mode:
the expected ground-truth test accuracy of the architecture it picks, how often that pick is
in the top 10% of the whole sample, and the CPU-seconds the search spends.

    python scripts/simulate_search.py --ground-truth results/ground_truth

Modes: `random K + P` trains K random candidates with proxy P and keeps the best;
`prescreen S N->K + P` scores N candidates with S, trains the best K with P and keeps the
best; `S over N` keeps the best of N by a training-free score (or FLOPs) alone.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks import gt_fidelity as gf
from ghostsearch import ConfigError
from ghostsearch.cli.common import ArgumentParser
from ghostsearch.provenance import provenance


def simulate(values: pd.DataFrame, costs: dict[str, float], truth: pd.Series, *, pool: int,
             top: int, screen: str | None, proxy: str | None, repeats: int = 2000,
             seed: int = 0) -> dict[str, float]:
    """One mode, `repeats` times: draw `pool` candidates; keep the best `top` by `screen`
    (all of them without one); train those with `proxy` and pick the best (without a proxy,
    the best by `screen`). Returns the pick's expected test accuracy, its chance of being in
    the top 10% of the whole sample, and the CPU-seconds spent."""
    ids = truth.index.to_numpy()
    acc = truth.to_numpy(dtype=float)
    k10 = max(1, int(np.ceil(0.1 * len(ids))))
    top10 = set(np.argsort(-acc, kind="stable")[:k10].tolist())
    rng = np.random.default_rng(seed)
    col = {c: values[c].reindex(ids).to_numpy(dtype=float) for c in values.columns}
    picks, hits = [], 0
    for _ in range(repeats):
        drawn = rng.choice(len(ids), size=pool, replace=False)
        kept = drawn
        if screen is not None:
            noise = rng.random(len(drawn)) * 1e-9  # break exact ties at random
            kept = drawn[np.argsort(-(col[screen][drawn] + noise), kind="stable")[:top]]
        chooser = col[proxy] if proxy is not None else col[screen]  # type: ignore[index]
        pick = kept[int(np.argmax(chooser[kept]))]
        picks.append(acc[pick])
        hits += int(pick in top10)
    cost = (pool * costs[screen] if screen is not None else 0.0) + (
        (top if screen is not None else pool) * costs[proxy] if proxy is not None else 0.0)
    return {"expected_test_acc": float(np.mean(picks)), "std_test_acc": float(np.std(picks)),
            "p_top10": hits / repeats, "cpu_s": float(cost),
            "regret_vs_sample_best": float(acc.max() - np.mean(picks))}


def reference_gain(truth: pd.DataFrame) -> pd.Series:
    """Each sampled architecture's test accuracy minus the reference GhostNets' at its FLOPs
    (linear between the references, flat beyond them): does the space hold better points
    than the width-scaled reference, and how many?"""
    refs = truth[truth.kind == "reference"].sort_values("mflops")
    sampled = truth[truth.kind == "sampled"].set_index("arch_id")
    line = np.interp(sampled.mflops, refs.mflops, refs.test_acc)
    return (sampled.test_acc - line).rename("gain_over_reference")


def modes(n: int, screens: list[str], proxies: list[str]) -> list[dict[str, object]]:
    """The grid of modes for a sample of `n` architectures."""
    out: list[dict[str, object]] = []
    pools = sorted({p for p in (10, 20, 40, n) if p <= n})
    for proxy in proxies:
        for k in (k for k in (1, 3, 5, 10) if k <= n):
            out.append({"mode": f"random {k} + {proxy}", "pool": k, "top": k, "screen": None,
                        "proxy": proxy})
    for screen in screens:
        for pool in pools:
            out.append({"mode": f"{screen} over {pool}", "pool": pool, "top": 1,
                        "screen": screen, "proxy": None})
            for proxy in proxies:
                for k in (k for k in (3, 5, 10) if k < pool):
                    out.append({"mode": f"prescreen {screen} {pool}->{k} + {proxy}",
                                "pool": pool, "top": k, "screen": screen, "proxy": proxy})
    return out


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ground-truth", required=True, help="the ground-truth table folder")
    p.add_argument("--space", default="ghostnet", help="the space the table was built for")
    p.add_argument("--screens", default="synflow,snip,naswot,rank_average,flops",
                   help="training-free rankings to prescreen with (default "
                        "synflow,snip,naswot,rank_average,flops)")
    p.add_argument("--repeats", type=int, default=2000, help="simulated searches per mode")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="default: simulation.json beside the table")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    from ghostsearch.search.space import load_space

    args = parse_args(argv)
    if args.repeats < 1:
        raise ConfigError(f"--repeats {args.repeats}: must be >= 1")
    table = Path(args.ground_truth)
    truth_all = gf.read_truth(table, load_space(args.space))
    sampled = truth_all[truth_all.kind == "sampled"].set_index("arch_id").test_acc
    if len(sampled) < 5:
        raise ConfigError(f"{table}: {len(sampled)} sampled architectures finished; the "
                          "simulation needs at least 5")
    scores_path = table / "scores.csv"
    if not scores_path.exists():
        raise ConfigError(f"{scores_path}: no scores yet; run scripts/proxy_fidelity.py "
                          "--ground-truth first")
    methods = gf.score_methods(pd.read_csv(scores_path))
    methods.update(gf.proxy_methods(gf.read_proxies(table)))
    methods.update(gf.curve_methods(table))
    screens = [s.strip() for s in args.screens.split(",") if s.strip()]
    unknown = [s for s in screens if s not in methods]
    if unknown:
        raise ConfigError(f"--screens {unknown[0]!r}: no such ranking in {table} (known: "
                          f"{', '.join(m for m, v in methods.items() if v[2] != 'proxy')})")
    proxies = [m for m, v in methods.items() if v[2] in ("proxy", "learning curve")]
    values = pd.DataFrame({m: v[0] for m, v in methods.items()})
    costs = {m: v[1] for m, v in methods.items()}
    rows = []
    for mode in modes(len(sampled), screens, proxies):
        r = simulate(values, costs, sampled, pool=int(mode["pool"]), top=int(mode["top"]),
                     screen=mode["screen"], proxy=mode["proxy"], repeats=args.repeats,
                     seed=args.seed)
        rows.append({"mode": mode["mode"], **r})
    result = pd.DataFrame(rows).sort_values("expected_test_acc", ascending=False,
                                            ignore_index=True)
    print(result.to_markdown(index=False, floatfmt=".3f"))
    ranked = np.sort(sampled.to_numpy())[::-1]
    threshold = ranked[max(1, int(np.ceil(0.1 * len(ranked)))) - 1]
    print(f"{len(sampled)} sampled architectures; the sample's best {ranked[0]:.2f}%, its "
          f"top-10% threshold {threshold:.2f}%")
    gain = reference_gain(truth_all)
    if len(gain):
        print(f"against the references at equal FLOPs: {int((gain > 0).sum())} of {len(gain)} "
              f"sampled architectures above them, {int((gain > 1).sum())} by more than 1 point "
              f"(best {gain.max():+.2f} points, {gain.idxmax()}; median {gain.median():+.2f})")
    out = Path(args.json) if args.json else table / "simulation.json"
    out.write_text(json.dumps({"sampled_architectures": len(sampled), "repeats": args.repeats,
                               "gain_over_reference": gain.round(3).to_dict(),
                               "truth": "mean test accuracy over the finished seeds",
                               "table": result.to_dict("records"),
                               "provenance": provenance(args)}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0
