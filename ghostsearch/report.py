"""The report a user reads after a search: every trial as a table, the exact Pareto front
(validation accuracy up, FLOPs or latency down), the reference GhostNets beside the found
architectures, and the files: trials.csv, pareto.csv, report.md, report.html, PNG plots."""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd

from .cli import markdown
from .space import STAGE_KEYS, STAGE_NAMES

_ABBREV = {"ghost_ratio": "s", "cheap_kernel": "d", "kernel": "k", "expansion": "e",
           "depth": "n", "se": "se"}
_SE_SHORT = {"none": "-", "reference": "r", "all": "a"}
STAGE_COLUMNS = tuple(_ABBREV.values())
NOTES = ("Columns: s ghost ratio, d cheap-operation kernel, k depthwise kernel, e expansion "
         "multiplier, n depth, se squeeze-excite (- none, r as in the paper, a all), each per "
         "stage 1/.../6. val_gain / test_gain: accuracy of the best found architecture at equal "
         "or lower FLOPs minus the baseline's; dominated_by: found trials at least as accurate "
         "and no more costly, better in one. Accuracies (%) come from the proxy training, not "
         "a full training.")
TRIAL_COLUMNS = ("study", "trial", "state", "baseline", "feasible", "width", *STAGE_COLUMNS,
                 "MFLOPs", "params_M", "latency_ms", "measured_ms", "measured_p90_ms",
                 "val_acc", "last_val_acc", "test_acc", "train_s", "epochs", "seed", "reason",
                 "trained", "arch")


def _stage_column(params: dict[str, Any], key: str) -> str:
    values = [params.get(f"{n}.{key}") for n in STAGE_NAMES]
    if key == "se":
        return "/".join(_SE_SHORT.get(v, "") for v in values)
    return "/".join("" if v is None else f"{v:g}" for v in values)


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per trial, infeasible, pruned and failed ones included with their reason.

    Per-stage choices read stage1/.../stage6; SE is `-` (none), `r` (as in the paper), `a` (all).
    """
    from .measure import measured_latency

    measured = measured_latency(study)
    rows = []
    for t in study.get_trials(deepcopy=False):
        a, p = t.user_attrs, t.params
        m = measured.get(t.number, {})
        row: dict[str, Any] = {
            "study": study.study_name, "trial": t.number, "state": t.state.name,
            "baseline": a.get("baseline") or "", "feasible": a.get("feasible"),
            "width": p.get("width"),
        }
        for key in STAGE_KEYS:
            row[_ABBREV[key]] = _stage_column(p, key)
        reason = a.get("reason", "")
        if t.state == optuna.trial.TrialState.FAIL and not reason:
            reason = "failed (see the worker's log)"
        row.update({
            "MFLOPs": a["flops"] / 1e6 if "flops" in a else None,
            "params_M": a["params"] / 1e6 if "params" in a else None,
            "latency_ms": a.get("latency_ms"),
            "measured_ms": m.get("measured_ms"),
            "measured_p90_ms": m.get("measured_p90_ms"),
            "val_acc": a.get("val_acc"),
            "last_val_acc": (a.get("val_curve") or [None])[-1],
            "test_acc": a.get("test_acc"),
            "train_s": a.get("train_seconds"),
            "epochs": a.get("epochs_run"),
            "seed": a.get("seed"),
            "reason": reason,
            "trained": a.get("decision") == "train" or bool(a.get("trained")),
            "arch": a.get("arch", ""),
        })
        rows.append(row)
    df = pd.DataFrame(rows, columns=list(TRIAL_COLUMNS))
    for col in ("MFLOPs", "params_M", "latency_ms", "measured_ms", "measured_p90_ms", "val_acc",
                "last_val_acc", "test_acc", "train_s"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    return df


def pareto_mask(cost: Sequence[float], acc: Sequence[float]) -> np.ndarray:
    """True where no other point has cost <= and accuracy >= with one of them strict.

    Exact, ties included: duplicates of a non-dominated point are all on the front; a point
    that equals another in accuracy at higher cost is dominated.
    """
    c = np.asarray(cost, dtype=float)
    a = np.asarray(acc, dtype=float)
    mask = np.ones(len(c), dtype=bool)
    for start in range(0, len(c), 1024):  # O(n^2) in blocks: exact and fast for 10^4 trials
        cs, as_ = c[start:start + 1024, None], a[start:start + 1024, None]
        dominated = ((c[None, :] <= cs) & (a[None, :] >= as_)
                     & ((c[None, :] < cs) | (a[None, :] > as_))).any(axis=1)
        mask[start:start + 1024] = ~dominated
    return mask


def completed_feasible(df: pd.DataFrame, cost: str = "MFLOPs") -> pd.DataFrame:
    ok = (df.state == "COMPLETE") & (df.feasible == True) & df.val_acc.notna()  # noqa: E712
    return df[ok & df[cost].notna()]


def pareto_front(df: pd.DataFrame, cost: str = "MFLOPs", acc: str = "val_acc") -> pd.DataFrame:
    """The front among feasible completed trials, sorted by cost."""
    pts = completed_feasible(df, cost)
    front = pts[pareto_mask(pts[cost].to_numpy(), pts[acc].to_numpy())]
    return front.sort_values([cost, acc], ascending=[True, False])


def baseline_comparison(df: pd.DataFrame, cost: str = "MFLOPs") -> pd.DataFrame:
    """Per trained baseline: the found architectures that dominate it, and the best found
    architecture at equal or lower cost with its accuracy gain (validation and test)."""
    done = df[(df.state == "COMPLETE") & df.val_acc.notna() & df[cost].notna()]
    found = completed_feasible(df[df.baseline == ""], cost)
    rows = []
    for _, b in done[done.baseline != ""].iterrows():
        cheaper = found[found[cost] <= b[cost]]
        dom = cheaper[(cheaper.val_acc >= b.val_acc)
                      & ((cheaper[cost] < b[cost]) | (cheaper.val_acc > b.val_acc))]
        best = cheaper.loc[cheaper.val_acc.idxmax()] if len(cheaper) else None
        rows.append({
            "baseline": b.baseline, "study": b.study, "trial": b.trial, cost: b[cost],
            "params_M": b.params_M, "within_limits": bool(b.feasible),
            "val_acc": b.val_acc, "test_acc": b.test_acc,
            "dominated_by": ", ".join(str(int(t)) for t in dom.sort_values(cost).trial),
            "best_found_trial": None if best is None else int(best.trial),
            f"best_found_{cost}": None if best is None else best[cost],
            "best_found_val_acc": None if best is None else best.val_acc,
            "val_gain": None if best is None else best.val_acc - b.val_acc,
            "test_gain": None if best is None or pd.isna(best.test_acc) or pd.isna(b.test_acc)
            else best.test_acc - b.test_acc,
        })
    out = pd.DataFrame(rows)
    if len(out):  # trial numbers stay integers beside the missing ones
        out["best_found_trial"] = out.best_found_trial.astype("Int64")
    return out


def shown_state(df: pd.DataFrame) -> pd.Series:
    """Optuna's state, except NOT TRAINED for a trial that was decided without training (over a
    limit, or surplus): Optuna records those as COMPLETE or PRUNED, which reads as trained."""
    decided = df.state.isin(["COMPLETE", "PRUNED"]) & ~df.trained.astype(bool)
    return df.state.where(~decided, "NOT TRAINED")


def summary_table(study: optuna.Study, top: int = 5) -> pd.DataFrame:
    """The best `top` feasible trials plus every baseline, by validation accuracy."""
    df = trials_frame(study)
    done = df[(df.state == "COMPLETE") & df.val_acc.notna()]
    best = completed_feasible(df).nlargest(top, "val_acc")
    out = pd.concat([best, done[done.baseline != ""]]).drop_duplicates("trial")
    cols = ["trial", "baseline", "feasible", "width", "MFLOPs", "params_M", "latency_ms",
            "val_acc", "test_acc", "train_s"]
    if out.latency_ms.isna().all():
        cols.remove("latency_ms")
    return out.sort_values("val_acc", ascending=False)[cols]


# -- outputs ------------------------------------------------------------------------------

def plot_pareto(df: pd.DataFrame, path: Path, cost: str = "MFLOPs", limit: float | None = None,
                title: str = "") -> Path:
    """Every trained trial as a point, the front as a step line, baselines labelled, the limit
    as a vertical line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    unit = "MFLOPs (paper convention)" if cost == "MFLOPs" else "latency (ms)"
    fig, ax = plt.subplots(figsize=(10, 5.5), dpi=120)
    trained = df[df.val_acc.notna() & df[cost].notna()]
    searched = trained[trained.baseline == ""]
    feasible = searched[searched.feasible == True]  # noqa: E712
    pruned = df[(df.state == "PRUNED") & df.last_val_acc.notna() & df[cost].notna()]
    ax.scatter(feasible[cost], feasible.val_acc, s=22, c="tab:blue", alpha=0.6,
               label=f"found architectures ({len(feasible)})")
    if len(pruned):
        ax.scatter(pruned[cost], pruned.last_val_acc, s=14, c="tab:gray", marker="v", alpha=0.5,
                   label=f"pruned early ({len(pruned)}, last epoch's accuracy)")
    front = pareto_front(df, cost)
    if len(front):  # the front holds to the right of its last point, up to the limit
        right = max(float(trained[cost].max()), limit or 0.0)
        xs = [*front[cost], right]
        ys = [*front.val_acc, front.val_acc.iloc[-1]]
        ax.step(xs, ys, where="post", c="tab:blue", lw=1.5, label="Pareto front")
    base = trained[trained.baseline != ""]
    ax.scatter(base[cost], base.val_acc, s=90, c="tab:red", marker="*", zorder=5,
               label="reference GhostNet (same protocol)")
    lo, hi = float(trained[cost].min()), max(float(trained[cost].max()), limit or 0.0)
    for _, b in base.iterrows():
        right_edge = b[cost] > lo + 0.85 * (hi - lo)  # label inside the axes, off the legend
        ax.annotate(b.baseline.replace(" (widest within budget)", "\n(widest in budget)"),
                    (b[cost], b.val_acc), textcoords="offset points",
                    xytext=(-6, -12) if right_edge else (6, -12),
                    ha="right" if right_edge else "left", va="top" if right_edge else "baseline",
                    fontsize=8, color="tab:red", zorder=6,  # readable over other points
                    bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.5, "pad": 1})
    if limit is not None:
        label = f"budget {limit:g} MFLOPs" if cost == "MFLOPs" else f"limit {limit:g} ms"
        ax.axvline(limit, color="k", ls="--", lw=1, label=label)
    ax.set_xlabel(unit)
    ax.set_ylabel("validation accuracy (%), proxy training")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _fmt(df: pd.DataFrame) -> pd.DataFrame:
    return df.round(2).astype(object).where(df.notna(), "")


def _protocol_lines(settings: dict[str, Any]) -> list[str]:
    if not settings:
        return []
    p, d = settings.get("protocol", {}), settings.get("data", {})
    budget = settings.get("budget_flops")
    return [
        f"- budget: {budget / 1e6:.2f} MFLOPs (paper convention) at the deployment resolution"
        if budget else "- budget: none",
        f"- space: {settings.get('space')} (sha256 {settings.get('space_sha256')})",
        f"- objectives: {', '.join(settings.get('objectives', []))}",
        f"- data: {d.get('name')} {d.get('data_dir') or ''}; validation held out of train "
        f"(size {d.get('val_size') or 'default'}), train subset {d.get('train_subset') or 'all'};"
        " the test set is only reported",
        f"- proxy protocol: {p.get('epochs')} epochs, batch {p.get('batch_size')}, SGD lr "
        f"{p.get('lr')} (x batch/512), {p.get('schedule')}, momentum {p.get('momentum')}, "
        f"wd {p.get('weight_decay')}, label smoothing {p.get('label_smoothing')}; "
        f"stride-{p.get('small_input_stem_stride')} stem for images of 64 px or less",
        f"- seed: {settings.get('seed')}",
    ]


def _best_lines(df: pd.DataFrame, cost: str) -> list[str]:
    feas = completed_feasible(df, cost)
    if feas.empty:
        return ["No completed trial within the limits yet."]
    b = feas.loc[feas.val_acc.idxmax()]
    tag = f" ({b.baseline})" if b.baseline else ""
    return [
        f"Trial {b.trial} of {b.study}{tag}: {b.MFLOPs:.2f} MFLOPs, {b.params_M:.2f}M params, "
        f"validation {b.val_acc:.2f}%, test {b.test_acc:.2f}%.",
        "",
        f"Width {b.width:g}; per stage (stage1/.../stage6): s {b.s}, d {b.d}, k {b.k}, "
        f"expansion {b.e}, depth {b.n}, SE {b.se}.",
        "",
        f"`{b.arch}`",
    ]


def _measured_section(studies: Sequence[optuna.Study]) -> tuple[str, Any] | None:
    """Predicted vs measured latency of the final Pareto set, when it was measured."""
    from .measure import measured_latency

    rows = [{"study": s.study_name, **row} for s in studies
            for row in measured_latency(s).values()]
    if not rows:
        return None
    df = pd.DataFrame(rows)
    err = df.error_pct.abs().mean()
    devices = ", ".join(sorted({f"{d} ({m})" for d, m in zip(df.device, df["mode"],
                                                            strict=True)}))
    title = (f"Measured latency of the final Pareto set (median ms, batch 1, {devices}; "
             f"table's mean absolute error {err:.1f}%)")
    cols = ["study", "trial", "baseline", "predicted_ms", "measured_ms", "measured_p90_ms",
            "error_pct", "within_limit"]
    if len(studies) == 1:
        cols = cols[1:]
    return title, _fmt(df[cols])


def write_report(studies: Sequence[optuna.Study], out_dir: str | Path) -> dict[str, Path]:
    """Write trials.csv, pareto.csv, report.md, report.html and the plots for one or more
    studies (merged into one comparison); works on a study that is still running."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    df = pd.concat([trials_frame(s) for s in studies], ignore_index=True)
    settings = [s.user_attrs.get("settings", {}) for s in studies]
    budgets = {s.get("budget_flops") for s in settings if s.get("budget_flops")}
    names = ", ".join(s.study_name for s in studies)
    files: dict[str, Path] = {"trials": out / "trials.csv", "pareto": out / "pareto.csv"}
    df.to_csv(files["trials"], index=False)
    front = pareto_front(df)
    front.to_csv(files["pareto"], index=False)
    costs = ["MFLOPs"] + (["latency_ms"] if df.latency_ms.notna().any() else [])
    for cost in costs:
        key = "pareto_flops" if cost == "MFLOPs" else "pareto_latency"
        lat_limits = {s.get("latency_ms") for s in settings if s.get("latency_ms")}
        if cost == "MFLOPs":
            limit = min(budgets) / 1e6 if budgets else None
        else:
            limit = min(lat_limits) if lat_limits else None
        files[key] = plot_pareto(df, out / f"{key}.png", cost, limit, title=names)
    comparison = baseline_comparison(df)

    counts = shown_state(df).value_counts().to_dict()
    trained = int(df.trained.sum())
    completed = int((df.trained & (df.state == "COMPLETE")).sum())
    infeasible = int(((df.feasible == False) & (df.baseline == "")).sum())  # noqa: E712
    front_cols = ["study", "trial", "baseline", "MFLOPs", "params_M", "val_acc", "test_acc",
                  "width", *STAGE_COLUMNS]
    trial_cols = ["study", "trial", "state", "baseline", "MFLOPs", "params_M", "val_acc",
                  "test_acc", "train_s", "reason"]
    top = df.assign(state=shown_state(df)).sort_values("val_acc", ascending=False,
                                                       na_position="last")
    if len(studies) == 1:  # one study: its name is in the title, not in every row
        front_cols, trial_cols = front_cols[1:], trial_cols[1:]
        comparison = comparison.drop(columns=["study"], errors="ignore")
    sections = [
        ("Setting", "\n".join(sum((_protocol_lines(s) for s in settings[:1]), [])
                              + [f"- trials: {len(df)} ({trained} trained, of which "
                                 f"{completed} to the end; {infeasible} over a "
                                 f"limit and never trained; states "
                                 f"{', '.join(f'{k} {v}' for k, v in sorted(counts.items()))})"])),
        ("Best architecture within the limits", "\n".join(_best_lines(df, "MFLOPs"))),
        ("Pareto front (validation accuracy vs FLOPs)", _fmt(front[front_cols])),
        ("Reference GhostNet baselines, same protocol", _fmt(comparison)),
        ("All trials", _fmt(top[trial_cols])),
    ]
    measured = _measured_section(studies)
    if measured is not None:
        sections.insert(3, measured)
    md = [f"# ghostsearch report: {names}", ""]
    for title, body in sections:
        md += [f"## {title}", ""]
        md.append(markdown(body) if isinstance(body, pd.DataFrame)
                  else body)
        md.append("")
    md += [NOTES, ""]
    for cost in costs:
        key = "pareto_flops" if cost == "MFLOPs" else "pareto_latency"
        md += [f"![{key}]({key}.png)", ""]
    files["md"] = out / "report.md"
    files["md"].write_text("\n".join(md))

    style = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;font-size:12px;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}"
             "th{background:#f0f0f0}code{font-size:11px}img{max-width:100%}")
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>ghostsearch report: "
             f"{html.escape(names)}</title><style>{style}</style></head><body>",
             f"<h1>ghostsearch report: {html.escape(names)}</h1>"]
    for cost in costs:
        key = "pareto_flops" if cost == "MFLOPs" else "pareto_latency"
        data = base64.b64encode(files[key].read_bytes()).decode()
        parts.append(f"<img alt='{key}' src='data:image/png;base64,{data}'>")
    for title, body in sections:
        parts.append(f"<h2>{html.escape(title)}</h2>")
        if isinstance(body, pd.DataFrame):
            parts.append(body.to_html(index=False, escape=True))
        else:
            items = [html.escape(line[2:]) for line in body.splitlines() if line.startswith("- ")]
            text = [html.escape(line) for line in body.splitlines()
                    if line and not line.startswith("- ")]
            if items:
                parts.append("<ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>")
            parts += [f"<p><code style='word-break:break-all'>{t.strip('`')}</code></p>"
                      if t.startswith("`") else f"<p>{t}</p>" for t in text]
    parts.append(f"<p>{html.escape(NOTES)}</p></body></html>")
    files["html"] = out / "report.html"
    files["html"].write_text("\n".join(parts))
    (out / "report.json").write_text(json.dumps(
        {"studies": [s.study_name for s in studies], "files": {k: v.name for k, v in
                                                               files.items()}}, indent=2))
    return files
