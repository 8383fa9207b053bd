"""Every cheap ranking measured against one ground truth (`scripts/build_ground_truth.py`):
the training-free scores, #params and FLOPs, and their rank average, by Kendall tau, Spearman
rho and precision of the top 10% (bootstrap 95% intervals), with the CPU-seconds each costs
per architecture."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.ground_truth import read_plan
from ghostsearch.arch.config import load_config
from ghostsearch.errors import ConfigError
from ghostsearch.report.ranking import ranking_metrics
from ghostsearch.search.data import Dataset
from ghostsearch.search.prescreen import score_batch
from ghostsearch.search.proxy import proxy_config
from ghostsearch.search.scores import score_architecture
from ghostsearch.search.space import SearchSpace

BASELINES = ("params", "flops")


def read_truth(table_dir: str | Path, space: SearchSpace) -> pd.DataFrame:
    """Mean test and validation accuracy per architecture over its finished seeds."""
    table_dir = Path(table_dir)
    meta = read_plan(table_dir)
    if meta.get("space_sha256") != space.fingerprint():
        raise ConfigError(f"{table_dir}: a ground truth of space {meta.get('space')!r} "
                          f"({meta.get('space_sha256')}), not of {space.name!r} "
                          f"({space.fingerprint()}); pass the space it was built for")
    runs_path = table_dir / "runs.csv"
    if not runs_path.exists():
        raise ConfigError(f"{runs_path}: no finished unit yet")
    runs = pd.read_csv(runs_path)
    truth = runs.groupby(["arch_id", "kind", "name"], as_index=False).agg(
        test_acc=("test_acc", "mean"), val_acc=("val_acc", "mean"), seeds=("seed", "count"),
        mflops=("mflops", "first"), params=("params", "first"),
        train_seconds=("train_seconds", "mean"))
    return truth


def score_table(table_dir: str | Path, arch_ids: Sequence[str], names: Sequence[str],
                data: Dataset, *, seed: int = 0,
                progress: Callable[[str], None] | None = None) -> pd.DataFrame:
    """Each score of each architecture (its proxy form) and the CPU-seconds it took; cached
    in `scores.csv` beside the table, so a growing table only scores what is new."""
    cache_path = Path(table_dir) / "scores.csv"
    cached = pd.read_csv(cache_path) if cache_path.exists() else pd.DataFrame(
        columns=["arch_id", "score", "value", "cpu_s", "batch", "seed"])
    x, y = score_batch(data)
    have = {(a, s) for a, s in zip(cached.arch_id, cached.score, strict=True)}
    new = []
    for arch in arch_ids:
        cfg = load_config(Path(table_dir) / "configs" / f"{arch}.json")
        from ghostsearch.search.presets import GROUND_TRUTH_PROTOCOL

        pcfg = proxy_config(cfg, data, GROUND_TRUTH_PROTOCOL)
        for name in names:
            if (arch, name) in have:
                continue
            start = time.process_time()
            value = score_architecture(pcfg, name, x, y, seed=seed)
            new.append({"arch_id": arch, "score": name, "value": value,
                        "cpu_s": time.process_time() - start, "batch": len(y), "seed": seed})
        if progress is not None:
            progress(f"scored {arch}")
    if new:
        cached = pd.concat([cached, pd.DataFrame(new)], ignore_index=True)
        cached.to_csv(cache_path, index=False)
    return cached[cached.arch_id.isin(arch_ids) & cached.score.isin(names)]


def fidelity_table(truth: pd.DataFrame, scores: pd.DataFrame, *, boot: int = 1000,
                   seed: int = 0) -> pd.DataFrame:
    """One row per ranking method: its agreement with the ground truth's test accuracy."""
    wide = scores.pivot_table(index="arch_id", columns="score", values="value")
    cost = scores.groupby("score").cpu_s.mean()
    wide = wide.loc[truth.arch_id]
    target = truth.test_acc.to_numpy()
    rows = []
    methods: dict[str, tuple[np.ndarray, float]] = {
        name: (wide[name].to_numpy(), float(cost[name])) for name in wide.columns}
    free = [n for n in wide.columns if n not in BASELINES]
    if len(free) > 1:  # the rank average of every training-free score
        ranks = np.mean([pd.Series(wide[n].to_numpy()).rank().to_numpy() for n in free], axis=0)
        methods["rank_average"] = (ranks, float(sum(cost[n] for n in free)))
    for name, (values, cpu_s) in methods.items():
        m = ranking_metrics(values, target, boot=boot, seed=seed)
        rows.append({"method": name, "kind": "baseline" if name in BASELINES else "score",
                     **m, "cpu_s_per_arch": cpu_s})
    return pd.DataFrame(rows).sort_values("kendall", ascending=False, ignore_index=True)


def plot_fidelity(table: pd.DataFrame, path: str | Path, n_archs: int) -> Path:
    """Kendall tau (with its interval) against CPU-seconds per architecture, log x."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for _, r in table.iterrows():
        x = max(r.cpu_s_per_arch, 1e-4)
        colour = "tab:gray" if r.kind == "baseline" else "tab:blue"
        ax.errorbar(x, r.kendall, yerr=[[r.kendall - r.kendall_lo], [r.kendall_hi - r.kendall]],
                    fmt="s" if r.kind == "baseline" else "o", color=colour, capsize=3)
        ax.annotate(r.method, (x, r.kendall), textcoords="offset points", xytext=(5, 4),
                    fontsize=8)
    best_base = table[table.kind == "baseline"].kendall.max()
    ax.axhline(best_base, color="tab:gray", ls="--", lw=1, label="better of FLOPs and params")
    ax.set_xscale("log")
    ax.set_xlabel("CPU-seconds per architecture")
    ax.set_ylabel("Kendall tau vs ground-truth test accuracy")
    ax.set_title(f"Ranking methods against the ground truth ({n_archs} architectures)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def summary(table: pd.DataFrame) -> dict[str, Any]:
    """Which methods clear the bar of the better of FLOPs and params, in words and numbers."""
    bar = table[table.kind == "baseline"].kendall.max()
    clears = table[(table.kind != "baseline") & (table.kendall > bar)].method.tolist()
    return {"bar_kendall": float(bar), "clear_the_bar": clears,
            "clear_by_0.1": table[(table.kind != "baseline")
                                  & (table.kendall >= bar + 0.1)].method.tolist()}


def write(table: pd.DataFrame, out: str | Path, extra: dict[str, Any]) -> None:
    Path(out).write_text(json.dumps({**extra, **summary(table),
                                     "table": table.to_dict("records")}, indent=2) + "\n")
