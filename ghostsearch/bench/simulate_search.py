"""Search modes simulated on a ground-truth table, as tabular NAS benchmarks do, and chosen out
of sample: the architectures (of one FLOPs band, or the whole table) are split in halves many
times; on one half every mode is simulated and the best by expected *validation* accuracy is
chosen; the other half then measures every mode and the chosen one. Cached signals stand in for
what a search computes (training-free scores, short proxies from
`scripts/build_proxy_table.py`, the long run's early epochs), and each trained proxy is drawn
with its own measured run-to-run noise, not one fixed value.

    python scripts/simulate_search.py --ground-truth results/ground_truth --band 170:200

Modes: `random K + P` trains K random candidates with proxy P and keeps the best;
`prescreen S N->K + P` scores N candidates with S, trains the best K with P and keeps the
best; `S over N` keeps the best of N by a training-free score (or FLOPs) alone. Reported per
mode, on the held-out halves: the pick's expected validation and test accuracy, its rank in
the half (1 = best by validation), the chance it is in the half's top 20%, the CPU-seconds.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ghostsearch import ConfigError
from ghostsearch.cli.common import ArgumentParser
from ghostsearch.provenance import provenance

from . import gt_fidelity as gf


def simulate(values: pd.DataFrame, costs: dict[str, float], val: pd.Series, test: pd.Series,
             *, pool: int, top: int, screen: str | None, proxy: str | None,
             noise: dict[str, float] | None = None, repeats: int = 2000,
             seed: int = 0) -> dict[str, float]:
    """One mode on the architectures of `val`, `repeats` times: draw `pool` candidates; keep
    the best `top` by `screen` (all of them without one); train those with `proxy` (its value
    plus normal noise of sd `noise[proxy]`) and pick the best (without a proxy, the best by
    `screen`)."""
    ids = val.index.to_numpy()
    v, t = val.to_numpy(dtype=float), test.reindex(ids).to_numpy(dtype=float)
    rank_of = np.empty(len(ids), dtype=int)
    rank_of[np.argsort(-v, kind="stable")] = np.arange(1, len(ids) + 1)
    k20 = max(1, int(np.ceil(0.2 * len(ids))))
    rng = np.random.default_rng(seed)
    col = {c: values[c].reindex(ids).to_numpy(dtype=float) for c in values.columns}
    sd = (noise or {}).get(proxy, 0.0) if proxy is not None else 0.0
    picks = []
    for _ in range(repeats):
        drawn = rng.choice(len(ids), size=pool, replace=False)
        kept = drawn
        if screen is not None:
            ties = rng.random(len(drawn)) * 1e-9  # break exact ties at random
            kept = drawn[np.argsort(-(col[screen][drawn] + ties), kind="stable")[:top]]
        if proxy is not None:
            seen = col[proxy][kept] + rng.normal(0.0, sd, len(kept)) if sd else col[proxy][kept]
        else:
            seen = col[screen][kept]  # type: ignore[index]
        picks.append(kept[int(np.argmax(seen))])
    picks_a = np.array(picks)
    cost = (pool * costs[screen] if screen is not None else 0.0) + (
        (top if screen is not None else pool) * costs[proxy] if proxy is not None else 0.0)
    return {"expected_val_acc": float(v[picks_a].mean()),
            "expected_test_acc": float(t[picks_a].mean()),
            "mean_rank": float(rank_of[picks_a].mean()),
            "p_top20": float((rank_of[picks_a] <= k20).mean()), "cpu_s": float(cost),
            "regret_val": float(v.max() - v[picks_a].mean())}


def out_of_sample(values: pd.DataFrame, costs: dict[str, float], val: pd.Series,
                  test: pd.Series, grid: list[dict[str, object]], *,
                  noise: dict[str, float], splits: int = 20, repeats: int = 300,
                  seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every mode of `grid` chosen on one half and measured on the other, `splits` times.

    Returns (per mode: its mean over the held-out halves and how often it was chosen;
    per split: the chosen mode and how it did on the held-out half)."""
    rng = np.random.default_rng(seed)
    ids = val.index.to_numpy()
    per_mode: dict[str, list[dict[str, float]]] = {str(m["mode"]): [] for m in grid}
    chosen_rows = []
    for split in range(splits):
        order = rng.permutation(len(ids))
        halves = ids[order[: len(ids) // 2]], ids[order[len(ids) // 2:]]
        for a, b in (halves, halves[::-1]):
            n = min(len(a), len(b))

            def run(m: dict[str, object], part: np.ndarray, s: int,
                    n: int = n) -> dict[str, float]:
                return simulate(values, costs, val[part], test, pool=min(int(m["pool"]), n),
                                top=min(int(m["top"]), n), screen=m["screen"],  # type: ignore
                                proxy=m["proxy"], noise=noise,  # type: ignore[arg-type]
                                repeats=repeats, seed=s)

            on_a = {str(m["mode"]): run(m, a, seed + split) for m in grid}
            best = max(on_a, key=lambda k: (on_a[k]["expected_val_acc"], -on_a[k]["cpu_s"]))
            for m in grid:
                r = run(m, b, seed + split + 1)
                per_mode[str(m["mode"])].append(r)
                if m["mode"] == best:
                    chosen_rows.append({"split": split, "chosen": best, **r})
    chosen = pd.DataFrame(chosen_rows)
    counts = chosen.chosen.value_counts()
    table = pd.DataFrame([{"mode": k, **pd.DataFrame(v).mean().to_dict(),
                           "chosen_share": float(counts.get(k, 0) / len(chosen))}
                          for k, v in per_mode.items()])
    return table.sort_values("expected_val_acc", ascending=False, ignore_index=True), chosen


def reference_gain(truth: pd.DataFrame) -> pd.Series:
    """Each sampled architecture's test accuracy minus the reference GhostNets' at its FLOPs
    (linear between the references, flat beyond them): does the space hold better points
    than the width-scaled reference, and how many?"""
    refs = truth[truth.kind == "reference"].sort_values("mflops")
    sampled = truth[truth.kind == "sampled"].set_index("arch_id")
    if refs.empty:  # a table without references has no line to compare with
        return pd.Series(dtype=float, name="gain_over_reference")
    line = np.interp(sampled.mflops, refs.mflops, refs.test_acc)
    return (sampled.test_acc - line).rename("gain_over_reference")


def modes(n: int, screens: list[str], proxies: list[str]) -> list[dict[str, object]]:
    """The grid of modes for `n` architectures (a half of the band)."""
    out: list[dict[str, object]] = []
    pools = sorted({p for p in (5, 10, 20, 40, n) if p <= n})
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
    p.add_argument("--band", default=None, metavar="LO:HI",
                   help="simulate on the sampled architectures within [LO, HI] MFLOPs "
                        "(default: every sampled architecture)")
    p.add_argument("--screens", default="synflow,snip,naswot,rank_average,flops",
                   help="training-free rankings to prescreen with (default "
                        "synflow,snip,naswot,rank_average,flops)")
    p.add_argument("--supernet", default=None, metavar="TAG",
                   help="also prescreen with a supernet's inherited-weight accuracies, cached in "
                        "supernet.csv by `proxy_fidelity.py --supernet` (TAG: its supernet "
                        "column, like a3ba8bed-e12-c512); its cost is the seconds a candidate, "
                        "its one training is not counted")
    p.add_argument("--splits", type=int, default=20, help="random half splits (default 20)")
    p.add_argument("--repeats", type=int, default=300,
                   help="simulated searches per mode and half (default 300)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None,
                   help="default: simulation-<band>.json (or simulation.json) beside the table")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    from ghostsearch.spaces.space import load_space

    args = parse_args(argv)
    if args.repeats < 1 or args.splits < 1:
        raise ConfigError(f"--repeats {args.repeats} --splits {args.splits}: must be >= 1")
    table = Path(args.ground_truth)
    truth_all = gf.read_truth(table, load_space(args.space))
    lo = hi = None
    if args.band:
        try:
            lo, hi = (float(x) for x in args.band.split(":"))
        except ValueError:
            raise ConfigError(f"--band {args.band!r}: expected LO:HI in MFLOPs, like "
                              "170:200") from None
    sampled = gf.in_band(truth_all, lo, hi).set_index("arch_id")
    if len(sampled) < 8:
        raise ConfigError(f"{table}: {len(sampled)} sampled architectures finished in that "
                          "band; the out-of-sample simulation needs at least 8")
    scores_path = table / "scores.csv"
    if not scores_path.exists():
        raise ConfigError(f"{scores_path}: no scores yet; run scripts/proxy_fidelity.py "
                          "--ground-truth first")
    methods = gf.score_methods(pd.read_csv(scores_path))
    proxies = gf.read_proxies(table)
    methods.update(gf.proxy_methods(proxies))
    methods.update(gf.curve_methods(table))
    band_truth = truth_all[truth_all.arch_id.isin(sampled.index)]
    methods.update(gf.size_free_methods(band_truth, {
        k: (v[0][v[0].index.isin(sampled.index)], v[1], v[2]) for k, v in methods.items()}))
    screens = [s.strip() for s in args.screens.split(",") if s.strip()]
    if args.supernet:
        cached = table / "supernet.csv"
        rows = pd.read_csv(cached) if cached.exists() else pd.DataFrame(columns=["supernet"])
        rows = rows[rows.supernet == args.supernet]
        if rows.empty:
            raise ConfigError(f"--supernet {args.supernet!r}: no such tag in {cached}; score the "
                              "table with scripts/proxy_fidelity.py --supernet DIR first")
        sn = gf.supernet_methods(rows)  # one it did not score everywhere is refused below
        methods.update(sn)
        screens += list(sn)
    noise = {k: v["sd"] for k, v in gf.proxy_noise(proxies).items()}
    noise.update(gf.curve_noise(table))
    unknown = [s for s in screens if s not in methods]
    if unknown:
        raise ConfigError(f"--screens {unknown[0]!r}: no such ranking in {table} (known: "
                          f"{', '.join(m for m, v in methods.items() if v[2] != 'proxy')})")
    # only trained signals whose noise was measured: a fixed value would flatter them
    trained = [m for m, v in methods.items() if v[2] in ("proxy", "learning curve")]
    missing = [m for m in trained if m not in noise]
    values = pd.DataFrame({m: v[0] for m, v in methods.items()}).reindex(sampled.index)
    # a signal some architectures lack would be picked by its gaps: it is left out whole
    incomplete = {m: int(values[m].notna().sum()) for m in values.columns
                  if values[m].isna().any()}
    for s in screens:
        if s in incomplete:
            raise ConfigError(f"{s!r}: scored on {incomplete[s]} of the {len(values)} "
                              "architectures; score the rest with scripts/proxy_fidelity.py "
                              "--ground-truth (and --supernet DIR for a supernet)")
    partial = [f"{m} ({incomplete[m]} of {len(values)})" for m in trained
               if m in incomplete and m in noise]
    proxies_used = [m for m in trained if m in noise and m not in incomplete]
    costs = {m: gf.cost_of(v[1], sampled.index) for m, v in methods.items()}
    grid = modes(len(sampled) // 2, screens, proxies_used)
    result, chosen = out_of_sample(values, costs, sampled.val_acc, sampled.test_acc, grid,
                                   noise=noise, splits=args.splits, repeats=args.repeats,
                                   seed=args.seed)
    print(result.to_markdown(index=False, floatfmt=".3f"))
    where = f"[{args.band.replace(':', ', ')}] MFLOPs" if args.band else "the whole table"
    print(f"{len(sampled)} sampled architectures in {where}, halves of {len(sampled) // 2}; "
          f"{args.splits} splits x 2 directions; trained signals with their noise (sd): "
          + (", ".join(f"{k} {noise[k]:.2f}" for k in proxies_used) or "none")
          + (f"; left out for want of a noise measurement: {', '.join(missing)}"
             if missing else "")
          + (f"; left out, not measured on every architecture: {', '.join(partial)}"
             if partial else ""))
    pick = chosen.mean(numeric_only=True)
    top = chosen.chosen.value_counts().head(3)
    print(f"the mode chosen on one half, on the other: expected val {pick.expected_val_acc:.2f}%,"
          f" test {pick.expected_test_acc:.2f}%, mean rank {pick.mean_rank:.1f} of "
          f"{len(sampled) - len(sampled) // 2}, {pick.cpu_s:.0f} CPU-s; chosen most often: "
          + "; ".join(f"{k} ({v} of {len(chosen)})" for k, v in top.items()))
    gain = reference_gain(truth_all)
    name = f"simulation-{args.band.replace(':', '-')}.json" if args.band else "simulation.json"
    out = Path(args.json) if args.json else table / name
    out.write_text(json.dumps({
        "sampled_architectures": len(sampled), "band_mflops": args.band,
        "splits": args.splits, "repeats": args.repeats, "noise_sd": noise,
        "left_out_without_noise": missing, "left_out_incomplete": partial,
        "truth": "validation accuracy chooses; test accuracy is reported",
        "chosen_out_of_sample": {"mean": pick.to_dict(), "modes": top.to_dict()},
        "gain_over_reference": gain.round(3).to_dict(),
        "table": result.to_dict("records"), "provenance": provenance(args)},
        indent=2, default=float) + "\n")
    print(f"wrote {out}")
    return 0
