"""The report of one or more studies: trials.csv, pareto.csv, report.md, report.html and the
accuracy-vs-cost plots."""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pandas as pd

from ..confirm import confirm_summary, confirmed_table, study_seconds, winner
from ..errors import StudyError
from ..provenance import write_atomic
from ..search.prescreen import PRESCREEN_KEY
from .frame import (
    NOTES,
    OPTIONAL_COLUMNS,
    STAGE_COLUMNS,
    _markdown,
    baseline_comparison,
    completed_feasible,
    measured_latency,
    pareto_front,
    shown_state,
    trials_frame,
)


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


def _cap(cap: int | None, otherwise: str) -> str:
    return f"at most {cap:,} (preset)" if cap else otherwise


@dataclass(frozen=True)
class Text:
    """A section's prose as (kind, text) parts, kind "item" (a bullet), "para" or "code";
    Markdown and HTML are both rendered from the parts, neither parsed back from the other."""

    parts: tuple[tuple[str, str], ...]

    @classmethod
    def items(cls, lines: Sequence[str]) -> Text:
        return cls(tuple(("item", line) for line in lines))

    def markdown(self) -> str:
        out: list[str] = []
        for i, (kind, text) in enumerate(self.parts):
            if kind != "item" and i and self.parts[i - 1][0] == "item":
                out.append("")
            out.append({"item": f"- {text}", "para": f"{text}\n", "code": f"`{text}`\n"}[kind])
        return "\n".join(out).rstrip("\n")

    def html(self) -> str:
        out: list[str] = []
        for kind, text in self.parts:
            if kind == "item":
                out.append(f"<li>{html.escape(text)}</li>")
                continue
            out.append(f"<p>{html.escape(text)}</p>" if kind == "para" else
                       f"<p><code style='word-break:break-all'>{html.escape(text)}</code></p>")
        joined = "".join(out)  # runs of items become lists
        return re.sub(r"((?:<li>.*?</li>)+)", r"<ul>\1</ul>", joined)


def _protocol_lines(settings: dict[str, Any]) -> list[str]:
    if not settings:
        return []
    p, d = settings.get("protocol", {}), settings.get("data", {})
    budget = settings.get("budget_flops")
    return [
        f"budget: {budget / 1e6:.2f} MFLOPs (paper convention) at the deployment resolution"
        if budget else "budget: none",
        f"space: {settings.get('space')} (sha256 {settings.get('space_sha256')})",
        f"objectives: {', '.join(settings.get('objectives', []))}",
        f"data: {d.get('name')}; validation held out of train (size "
        f"{d.get('val_size') or _cap(d.get('val_cap'), 'default')}, split seed "
        f"{d.get('split_seed', 0)}), train subset "
        f"{d.get('train_subset') or _cap(d.get('train_cap'), 'all')};"
        " the test set is only reported",
        f"proxy protocol: {p.get('epochs')} epochs, batch {p.get('batch_size')}, SGD lr "
        f"{p.get('lr')} (x batch/512), {p.get('schedule')}, momentum {p.get('momentum')}, "
        f"wd {p.get('weight_decay')}, label smoothing {p.get('label_smoothing')}; "
        f"stride-{p.get('small_input_stem_stride')} stem for images of 64 px or less",
        f"seed: {settings.get('seed')}",
    ]


def _best_lines(df: pd.DataFrame, cost: str) -> Text:
    feas = completed_feasible(df, cost)
    if feas.empty:
        return Text((("para", "No completed trial within the limits yet."),))
    b = feas.loc[feas.val_acc.idxmax()]
    tag = f" ({b.baseline})" if b.baseline else ""
    return Text((
        ("para", f"Trial {b.trial} of {b.study}{tag}: {b.MFLOPs:.2f} MFLOPs, {b.params_M:.2f}M "
                 f"params, validation {b.val_acc:.2f}%, test {b.test_acc:.2f}%."),
        ("para", f"Width {b.width:g}; per stage (stage1/.../stage6): s {b.s}, d {b.d}, k {b.k}, "
                 f"expansion {b.e}, depth {b.n}, SE {b.se}."),
        ("code", str(b.arch)),
    ))


def _measured_section(studies: Sequence[optuna.Study]) -> tuple[str, Any] | None:
    """Predicted vs measured latency of the final Pareto set, when it was measured."""
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


def plot_confirmed(rows: list[dict[str, Any]], path: Path) -> Path:
    """Confirmed test accuracy (mean and std over seeds) against FLOPs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        style = dict(fmt="s", color="tab:gray") if r["baseline"] else dict(fmt="o",
                                                                         color="tab:blue")
        std = 0.0 if r["test_std"] != r["test_std"] else r["test_std"]  # nan with one seed
        ax.errorbar(r["MFLOPs"], r["test_mean"], yerr=std, capsize=4, **style)
        ax.annotate(r["key"], (r["MFLOPs"], r["test_mean"]), textcoords="offset points",
                    xytext=(6, 4), fontsize=8)
    ax.set_xlabel("MFLOPs (deployment)")
    ax.set_ylabel("test accuracy, %, mean ± std over seeds")
    ax.set_title("Confirmed: found architectures (blue) and reference GhostNets (gray)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _confirmed_section(rows: list[dict[str, Any]], out: Path) -> tuple[str, Any, Path]:
    """The long-protocol retraining of the best trials beside the references, with verdicts."""
    table = pd.DataFrame(rows)
    cols = [c for c in ("key", "MFLOPs", "seeds", "test_mean", "test_std", "val_mean",
                        "val_std", "proxy_val", "diff_vs_ref", "ci_half", "verdict")
            if c in table]
    title = ("Confirmed (long protocol, mean ± std over seeds; difference to the reference at "
             "the budget width with a 95% interval from the noise pooled over the compared "
             "arms, adjusted for the candidates and looks)")
    return title, _fmt(table[cols]), plot_confirmed(rows, out / "confirmed.png")


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.2f} h"


def _seeds_text(rows: list[dict[str, Any]], planned: int) -> str:
    """The seeds each arm has, beside the seeds the confirmation started with."""
    have = sorted({int(r["seeds"]) for r in rows})
    if have == [planned]:
        return f"{planned} seeds an arm"
    arms = ", ".join(f"{r['key']} {int(r['seeds'])}" for r in rows)
    return f"seeds an arm: {arms} (started with {planned})"


def _verdict_section(study: optuna.Study, storage: Any,
                     rows: list[dict[str, Any]]) -> tuple[str, str] | None:
    """The answer first: the confirmed winner against the reference at the budget, how it was
    measured, how much of the confirmation is done and what the search and it took."""

    summary = confirm_summary(study, storage)
    if summary is None or not summary["units_done"]:
        return None
    best = winner(rows, summary["seeds"])
    p, d = summary["protocol"], summary["data"]
    search_s, confirm_s = study_seconds(study), summary["wall_seconds"]
    lines = [
        f"{best['key']} ({best['MFLOPs']:.2f} MFLOPs): "
        f"{best.get('verdict', 'no reference within the budget to compare with')}"
        if best else f"no verdict yet: no found architecture has all {summary['seeds']} "
                     "seeds done",
        f"protocol: {p['epochs']} epochs on {d['train']:,} training images, batch "
        f"{p['batch_size']}, {_seeds_text(rows, summary['seeds'])}; validated on "
        f"{d['val']:,} held-out "
        "images (the winner is chosen on them), tested on the full test split",
        f"units: {summary['units_done']} of {summary['units']} done, "
        f"{summary['train_seconds'] / 3600:.2f} h of training in all",
        f"wall time: search trials {_minutes(search_s)} + confirmation {_minutes(confirm_s)} = "
        f"{_minutes(search_s + confirm_s)} (time with a trial or unit running; pauses "
        "between resumed runs not counted)",
    ]
    return "Verdict", Text.items(lines)


def _prescreen_section(studies: Sequence[optuna.Study], df: pd.DataFrame,
                       out: Path) -> tuple[str, Any] | None:
    """The scored pool of a prescreened study: pool.csv with every candidate, and the picked
    ones beside what their proxy training then gave."""

    pools = [(s.study_name, s.user_attrs[PRESCREEN_KEY]) for s in studies
             if PRESCREEN_KEY in s.user_attrs]
    if not pools:
        return None
    rows = [{"study": name, "rank": r["rank"], "picked": r["picked"], "score": r["score"],
             "MFLOPs": r["flops"] / 1e6, "arch": r["arch"]}
            for name, pool in pools for r in pool["pool"]]
    table = pd.DataFrame(rows).sort_values(["study", "rank"])
    write_atomic(out / "pool.csv", table.to_csv(index=False))
    picked = table[table.picked].merge(df[["study", "trial", "arch", "val_acc", "test_acc"]],
                                       on=["study", "arch"], how="left")
    name, pool = pools[0]
    title = (f"Prescreen: {len(pool['pool'])} candidates within the limits scored with "
             f"{pool['score']} ({pool['cpu_seconds']:.1f} CPU-s), the best {pool['top']} "
             "trained (every candidate in pool.csv)")
    cols = ["rank", "score", "MFLOPs", "trial", "val_acc", "test_acc"]
    return title, _fmt(picked[(["study"] if len(studies) > 1 else []) + cols])


def write_report(studies: Sequence[optuna.Study], out_dir: str | Path,
                 storage: Any = None) -> dict[str, Path]:
    """Write trials.csv, pareto.csv, report.md, report.html and the plots for one or more
    studies (merged into one comparison); works on a study that is still running. With the
    `storage` (URL or storage) of a single study, its confirmation leads the report."""
    splits = {s.study_name: s.user_attrs.get("split") for s in studies}
    if len({v for v in splits.values() if v is not None}) > 1:
        shown = ", ".join(f"{k}: {v}" for k, v in splits.items())
        raise StudyError(f"these studies select on different validation splits ({shown}); "
                         "their accuracies do not compare, so they are not merged")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    df = pd.concat([trials_frame(s) for s in studies], ignore_index=True)
    settings = [s.user_attrs.get("settings", {}) for s in studies]
    budgets = {s.get("budget_flops") for s in settings if s.get("budget_flops")}
    names = ", ".join(s.study_name for s in studies)
    files: dict[str, Path] = {"trials": out / "trials.csv", "pareto": out / "pareto.csv"}
    write_atomic(files["trials"], df.to_csv(index=False))
    front = pareto_front(df)
    write_atomic(files["pareto"], front.to_csv(index=False))
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
    stage_cols = [c for c in STAGE_COLUMNS
                  if c not in OPTIONAL_COLUMNS or (df[c].fillna("") != "").any()]
    front_cols = ["study", "trial", "baseline", "MFLOPs", "params_M", "val_acc", "test_acc",
                  "width", *stage_cols]
    trial_cols = ["study", "trial", "state", "baseline", "MFLOPs", "params_M", "val_acc",
                  "test_acc", "train_s", "reason"]
    top = df.assign(state=shown_state(df)).sort_values("val_acc", ascending=False,
                                                       na_position="last")
    if len(studies) == 1:  # one study: its name is in the title, not in every row
        front_cols, trial_cols = front_cols[1:], trial_cols[1:]
        comparison = comparison.drop(columns=["study"], errors="ignore")
    sections = [
        ("Setting", Text.items(sum((_protocol_lines(s) for s in settings[:1]), [])
                               + [f"trials: {len(df)} ({trained} trained, of which "
                                  f"{completed} to the end; {infeasible} over a "
                                  f"limit and never trained; states "
                                  f"{', '.join(f'{k} {v}' for k, v in sorted(counts.items()))})"])),
        ("Best architecture within the limits", _best_lines(df, "MFLOPs")),
        ("Pareto front (validation accuracy vs FLOPs)", _fmt(front[front_cols])),
        ("Reference GhostNet baselines, same proxy protocol (one seed each: gains and "
         "dominance here are one proxy run, not a verdict)", _fmt(comparison)),
        ("All trials", _fmt(top[trial_cols])),
    ]
    measured = _measured_section(studies)
    if measured is not None:
        sections.insert(3, measured)

    confirmed = (confirmed_table(studies[0], storage)
                 if len(studies) == 1 and storage is not None else None)
    if confirmed:
        title, table, files["confirmed"] = _confirmed_section(confirmed, out)
        sections.insert(1, (title, table))
    pool = _prescreen_section(studies, df, out)
    if pool is not None:
        sections.insert(1, pool)
        files["pool"] = out / "pool.csv"
    verdict = _verdict_section(studies[0], storage, confirmed) if confirmed else None
    if verdict is not None:
        sections.insert(0, verdict)
    md = [f"# ghostsearch report: {names}", ""]
    for title, body in sections:
        md += [f"## {title}", ""]
        md.append(_markdown(body) if isinstance(body, pd.DataFrame) else body.markdown())
        md.append("")
    md += [NOTES, ""]
    images = [("pareto_flops" if cost == "MFLOPs" else "pareto_latency") for cost in costs]
    images += ["confirmed"] if "confirmed" in files else []
    for key in images:
        md += [f"![{key}]({key}.png)", ""]
    files["md"] = out / "report.md"
    write_atomic(files["md"], "\n".join(md))

    style = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;font-size:12px;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}"
             "th{background:#f0f0f0}code{font-size:11px}img{max-width:100%}")
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>ghostsearch report: "
             f"{html.escape(names)}</title><style>{style}</style></head><body>",
             f"<h1>ghostsearch report: {html.escape(names)}</h1>"]
    for key in images:
        data = base64.b64encode(files[key].read_bytes()).decode()
        parts.append(f"<img alt='{key}' src='data:image/png;base64,{data}'>")
    for title, body in sections:
        parts.append(f"<h2>{html.escape(title)}</h2>")
        if isinstance(body, pd.DataFrame):
            parts.append(body.to_html(index=False, escape=True))
        else:
            parts.append(body.html())
    parts.append(f"<p>{html.escape(NOTES)}</p></body></html>")
    files["html"] = out / "report.html"
    write_atomic(files["html"], "\n".join(parts))
    write_atomic(out / "report.json", json.dumps(
        {"studies": [s.study_name for s in studies], "files": {k: v.name for k, v in
                                                               files.items()}}, indent=2))
    return files
