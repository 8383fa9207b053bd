"""Every cheap ranking measured against one ground truth (`scripts/build_ground_truth.py`):
the training-free scores, #params and FLOPs, their rank average, short proxy trainings
(`scripts/build_proxy_table.py`), the long run's own early epochs (what a pruner sees), and
small predictors fitted with cross-validation, by Kendall tau against validation accuracy
(bootstrap 95% interval), Spearman rho and precision of the top 20%, with the CPU-seconds each
costs per architecture."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ghostsearch.arch.config import load_config
from ghostsearch.errors import ConfigError
from ghostsearch.search.prescreen import score_batch
from ghostsearch.search.proxy import proxy_config
from ghostsearch.search.scores import score_architecture
from ghostsearch.spaces.space import SearchSpace
from ghostsearch.stats import pooled_noise, rank_correlations, ranking_metrics, size_free
from ghostsearch.train.data import Dataset

from .ground_truth import read_plan

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


def seed_noise(table_dir: str | Path) -> dict[str, Any] | None:
    """The table's noise floor from its architectures trained with several seeds: each one's
    test accuracies, the standard deviation of one run pooled over them (`stats.pooled_noise`),
    and the 95% half-width of a difference between two single-seed runs (1.96 * sqrt(2) * sd),
    under which one-seed gaps say nothing; `val_pooled_sd` is the same for validation accuracy,
    the truth the rankings are scored on. None when no architecture has two seeds yet."""
    runs = pd.read_csv(Path(table_dir) / "runs.csv")
    groups = [(a, g.sort_values("seed")) for a, g in runs.groupby("arch_id") if len(g) > 1]
    if not groups:
        return None
    noise = pooled_noise([g.test_acc.tolist() for _, g in groups])  # weighted by runs - 1
    val = pooled_noise([g.val_acc.tolist() for _, g in groups])
    pooled = float(noise.sd)
    return {"architectures": [{"arch_id": a, "name": g.name.iloc[0], "seeds": g.seed.tolist(),
                               "test_acc": g.test_acc.tolist(),
                               "spread": float(g.test_acc.max() - g.test_acc.min())}
                              for a, g in groups],
            "pooled_sd": pooled, "pooled_df": noise.df, "val_pooled_sd": float(val.sd),
            "one_seed_difference_95": float(1.96 * np.sqrt(2) * pooled)}


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
        from ghostsearch.train.recipe import GROUND_TRUTH_PROTOCOL

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


# values by arch_id, CPU-seconds (by arch_id, or one figure for all), kind
Method = tuple[pd.Series, "pd.Series | float", str]


def cost_of(cost: pd.Series | float, arch_ids: Sequence[str] | pd.Index) -> float:
    """A method's mean CPU-seconds over `arch_ids`: a band's architectures cost what they cost
    (an in-band proxy trains networks twice the table's median size), not the table's mean."""
    if not isinstance(cost, pd.Series):
        return float(cost)
    mine = cost.reindex(list(arch_ids)).dropna()
    return float(mine.mean() if len(mine) else cost.mean())


def score_methods(scores: pd.DataFrame) -> dict[str, Method]:
    """Each score (and #params, FLOPs), plus the rank average of the training-free ones."""
    wide = scores.pivot_table(index="arch_id", columns="score", values="value")
    cost = scores.pivot_table(index="arch_id", columns="score", values="cpu_s")
    methods: dict[str, Method] = {
        name: (wide[name], cost[name], "baseline" if name in BASELINES else "score")
        for name in wide.columns}
    free = [n for n in wide.columns if n not in BASELINES]
    if len(free) > 1:
        ranks = pd.concat([wide[n].rank() for n in free], axis=1).mean(axis=1)
        methods["rank_average"] = (ranks, cost[free].sum(axis=1), "combination")
    return methods


def read_proxies(table_dir: str | Path) -> pd.DataFrame | None:
    path = Path(table_dir) / "proxies.csv"
    return pd.read_csv(path) if path.exists() else None


def proxy_methods(proxies: pd.DataFrame | None) -> dict[str, Method]:
    """Each short proxy's validation accuracy (its seed-0 run: what one search trial sees), at
    its mean CPU-seconds."""
    if proxies is None or proxies.empty:
        return {}
    out: dict[str, Method] = {}
    first = proxies[proxies.seed == 0] if "seed" in proxies else proxies
    for variant, g in first.groupby("variant", sort=False):
        e, n = str(variant).split("x")
        out[f"proxy {e} ep x {n} img"] = (g.groupby("arch_id").val_acc.mean(),
                                          g.groupby("arch_id").cpu_seconds.mean(), "proxy")
    return out


def supernet_scores(table_dir: str | Path, arch_ids: Sequence[str], supernet: str | Path,
                    data: Dataset, *, calibration: int = 512, val_images: int | None = None,
                    progress: Callable[[str], None] | None = None) -> pd.DataFrame:
    """Each architecture's validation accuracy with weights inherited from `supernet` (after
    BatchNorm recalibration on `calibration` training images, on the first `val_images`
    held-out images, default all) and the CPU-seconds it took; cached in `supernet.csv` beside
    the table per checkpoint (its plan, epoch, calibration and validation images), so a
    growing table or a longer-trained supernet scores only what is new."""
    from ghostsearch.supernet.rank import supernet_accuracy
    from ghostsearch.supernet.train import load_supernet, read_tag

    sn, _ = load_supernet(supernet)
    tag = f"{read_tag(supernet)['tag']}-c{calibration}"
    if val_images is not None:
        tag += f"-v{val_images}"
    cache_path = Path(table_dir) / "supernet.csv"
    cached = pd.read_csv(cache_path) if cache_path.exists() else pd.DataFrame(
        columns=["arch_id", "supernet", "value", "cpu_s"])
    have = set(cached.arch_id[cached.supernet == tag])
    new = []
    for arch in arch_ids:
        if arch in have:
            continue
        meta = json.loads((Path(table_dir) / "configs" / f"{arch}.json").read_text())
        start = time.process_time()
        value = supernet_accuracy(sn, meta["metadata"]["space_params"], data,
                                  calibration=calibration, val_images=val_images)
        new.append({"arch_id": arch, "supernet": tag, "value": value,
                    "cpu_s": time.process_time() - start})
        if progress is not None:
            progress(f"supernet {arch}: {value:.2f}%")
    if new:
        cached = pd.concat([cached, pd.DataFrame(new)], ignore_index=True)
        cached.to_csv(cache_path, index=False)
    return cached[(cached.supernet == tag) & cached.arch_id.isin(arch_ids)]


def supernet_methods(scores: pd.DataFrame) -> dict[str, Method]:
    if scores.empty:
        return {}
    tag = scores.supernet.iloc[0]
    by_arch = scores.set_index("arch_id")
    return {f"supernet ({tag})": (by_arch.value, by_arch.cpu_s, "supernet")}


def proxy_noise(proxies: pd.DataFrame | None) -> dict[str, dict[str, float]]:
    """Each proxy's own run-to-run noise: the standard deviation of one run's validation
    accuracy pooled over the architectures trained with several seeds, with its degrees of
    freedom (empty for a proxy with one seed everywhere)."""
    out: dict[str, dict[str, float]] = {}
    if proxies is None or proxies.empty:
        return out
    for variant, g in proxies.groupby("variant", sort=False):
        noise = pooled_noise([a.val_acc.tolist() for _, a in g.groupby("arch_id")])
        if noise.known:
            e, n = str(variant).split("x")
            out[f"proxy {e} ep x {n} img"] = {"sd": noise.sd, "df": noise.df}
    return out


def curve_methods(table_dir: str | Path, epochs: Sequence[int] = (1, 2, 3, 6)) -> dict[str, Method]:
    """The long run's validation accuracy after its first k epochs: what a pruner watching
    the ground-truth protocol would see, at k/E of its cost (one thread: CPU ~ wall)."""
    runs = pd.read_csv(Path(table_dir) / "runs.csv")
    curves = runs.assign(curve=runs.val_curve.map(json.loads))
    total = len(curves.curve.iloc[0])
    out: dict[str, Method] = {}
    for k in (k for k in epochs if k < total):
        vals = curves.assign(v=curves.curve.map(lambda c, k=k: c[k - 1]))
        out[f"long run, epoch {k} of {total}"] = (
            vals.groupby("arch_id").v.mean(),
            runs.groupby("arch_id").train_seconds.mean() * k / total, "learning curve")
    return out


def curve_noise(table_dir: str | Path) -> dict[str, float]:
    """Run-to-run noise (sd) of the long run's validation accuracy after its first k epochs,
    pooled over the architectures trained with several seeds, keyed like `curve_methods`."""
    runs = pd.read_csv(Path(table_dir) / "runs.csv")
    curves = runs.assign(curve=runs.val_curve.map(json.loads))
    total = len(curves.curve.iloc[0])
    out: dict[str, float] = {}
    for k in range(1, total):
        noise = pooled_noise([[c[k - 1] for c in g.curve] for _, g in curves.groupby("arch_id")])
        if noise.known:
            out[f"long run, epoch {k} of {total}"] = noise.sd
    return out


def cv_predictions(features: pd.DataFrame, target: pd.Series, *, folds: int = 5,
                   repeats: int = 20, alpha: float = 1.0, seed: int = 0) -> pd.Series:
    """Out-of-fold predictions of a ridge regression on the features' ranks (robust to the
    scores' scales), averaged over `repeats` random fold splits: every prediction comes from a
    model that never saw that architecture's accuracy."""
    x_all = features.rank(pct=True).to_numpy(dtype=float)
    y_all = target.to_numpy(dtype=float)
    n = len(y_all)
    rng = np.random.default_rng(seed)
    pred = np.zeros(n)
    for _ in range(repeats):
        order = rng.permutation(n)
        for fold in np.array_split(order, min(folds, n)):
            train = np.setdiff1d(order, fold)
            x, y = x_all[train], y_all[train]
            mu, sd = x.mean(0), x.std(0) + 1e-12
            xs = (x - mu) / sd
            w = np.linalg.solve(xs.T @ xs + alpha * np.eye(xs.shape[1]), xs.T @ (y - y.mean()))
            pred[fold] += ((x_all[fold] - mu) / sd) @ w + y.mean()
    return pd.Series(pred / repeats, index=features.index)


def predictor_methods(truth: pd.DataFrame, base: dict[str, Method]) -> dict[str, Method]:
    """Ridge predictors with cross-validation: on every training-free score with #params and
    FLOPs, and on those plus each short proxy."""
    target = truth.set_index("arch_id").val_acc  # fitted on what choices are made on
    free = {k: v for k, v in base.items() if v[2] in ("score", "baseline")}
    out: dict[str, Method] = {}
    if len(free) < 2 or len(target) < 8:
        return out
    groups = {"ridge(scores, params, FLOPs)": list(free)}
    for name, m in base.items():
        if m[2] == "proxy":
            groups[f"ridge(scores, params, FLOPs, {name})"] = [*free, name]
    for label, names in groups.items():
        feats = pd.concat({n: base[n][0] for n in names}, axis=1).reindex(target.index).dropna()
        if len(feats) < 8:
            continue
        pred = cv_predictions(feats, target.loc[feats.index])
        cost = sum((base[n][1] if isinstance(base[n][1], pd.Series) else
                    pd.Series(float(base[n][1]), index=feats.index)).reindex(feats.index)
                   for n in names)
        out[label] = (pred, cost, "predictor")
    return out


def size_free_methods(truth: pd.DataFrame, methods: dict[str, Method]) -> dict[str, Method]:
    """Each score and proxy made size-free: its residual after a line on log FLOPs, fitted on
    the architectures given (what it says beyond the size that a band already fixes)."""
    flops = truth.set_index("arch_id").mflops
    out: dict[str, Method] = {}
    for name, (values, cpu_s, kind) in methods.items():
        if kind not in ("score", "proxy", "combination") or name == "flops":
            continue
        both = pd.concat([values.rename("v"), flops.rename("f")], axis=1,
                         join="inner").dropna()
        if len(both) < 4:
            continue
        out[f"{name}, size-free"] = (pd.Series(size_free(both.v, both.f), index=both.index),
                                     cpu_s, f"{kind}, size-free")
    return out


def fidelity_table(truth: pd.DataFrame, methods: dict[str, Method], *, boot: int = 1000,
                   seed: int = 0, target: str = "val_acc", top: float = 0.2) -> pd.DataFrame:
    """One row per ranking method: its agreement with the ground truth's `target` (validation
    accuracy: what choices are made on) on the architectures it has values for (`archs`),
    with Kendall tau against test accuracy beside it (reported only)."""
    by_arch = truth.set_index("arch_id")
    rows = []
    for name, (values, cpu_s, kind) in methods.items():
        both = pd.concat([values.rename("v"), by_arch[target].rename("t"),
                          by_arch.test_acc.rename("test")], axis=1, join="inner").dropna()
        if len(both) < 3 or both.v.nunique() < 2:
            continue  # too few architectures, or a constant that ranks nothing
        m = ranking_metrics(both.v.to_numpy(), both.t.to_numpy(), boot=boot, seed=seed, top=top)
        rows.append({"method": name, "kind": kind, "archs": len(both), **m,
                     "kendall_test": rank_correlations(both.v, both.test)["kendall"],
                     "cpu_s_per_arch": cost_of(cpu_s, both.index)})
    return pd.DataFrame(rows).sort_values("kendall", ascending=False, ignore_index=True)


def in_band(truth: pd.DataFrame, low: float | None, high: float | None,
            sampled_only: bool = True) -> pd.DataFrame:
    """The architectures of the table within [low, high] MFLOPs (all with None)."""
    keep = pd.Series(True, index=truth.index)
    if low is not None:
        keep &= truth.mflops >= low
    if high is not None:
        keep &= truth.mflops <= high
    if sampled_only:
        keep &= truth.kind == "sampled"
    return truth[keep]


def plot_fidelity(table: pd.DataFrame, path: str | Path, n_archs: int) -> Path:
    """Kendall tau (with its interval) against CPU-seconds per architecture, log x."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    colours = {"baseline": "tab:gray", "score": "tab:blue", "combination": "tab:purple",
               "predictor": "tab:purple", "proxy": "tab:orange",
               "learning curve": "tab:green"}
    for _, r in table.iterrows():
        x = max(r.cpu_s_per_arch, 1e-4)
        colour = colours.get(r.kind, "tab:blue")
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
    """Which methods clear the bar of the better of FLOPs and params, in words and numbers:
    `clear_the_bar` by the point estimate, `clear_with_interval` by the lower end of the
    bootstrap interval."""
    bar = table[table.kind == "baseline"].kendall.max()
    clears = table[(table.kind != "baseline") & (table.kendall > bar)].method.tolist()
    sure = table[(table.kind != "baseline") & (table.kendall_lo > bar)].method.tolist()
    return {"bar_kendall": float(bar), "clear_the_bar": clears, "clear_with_interval": sure,
            "clear_by_0.1": table[(table.kind != "baseline")
                                  & (table.kendall >= bar + 0.1)].method.tolist()}


def write(table: pd.DataFrame, out: str | Path, extra: dict[str, Any]) -> None:
    Path(out).write_text(json.dumps({**extra, **summary(table),
                                     "table": table.to_dict("records")}, indent=2) + "\n")
