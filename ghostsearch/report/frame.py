"""The report a user reads after a search: every trial as a table, the exact Pareto front
(validation accuracy up, FLOPs or latency down), the reference GhostNets beside the found
architectures, and the files: trials.csv, pareto.csv, report.md, report.html, PNG plots."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import optuna
import pandas as pd

from ..spaces.space import ALL_KEYS, OPTIONAL_KEYS, STAGE_NAMES

_ABBREV = {"ghost_ratio": "s", "cheap_kernel": "d", "kernel": "k", "expansion": "e",
           "depth": "n", "se": "se", "attention": "dfc", "reparam": "rep"}
_SHORT = {"se": {"none": "-", "reference": "r", "all": "a"}, "attention": {"none": "-", "dfc": "d"},
          "reparam": {False: "-", True: "r"}}
STAGE_COLUMNS = tuple(_ABBREV.values())
OPTIONAL_COLUMNS = tuple(_ABBREV[k] for k in OPTIONAL_KEYS)  # empty for spaces without them
NOTES = ("Columns: s ghost ratio, d cheap-operation kernel, k depthwise kernel, e expansion "
         "multiplier, n depth, se squeeze-excite (- none, r as in the paper, a all), dfc "
         "GhostNetV2 attention (d), rep GhostNetV3 branches (r), each per stage 1/.../6. "
         "val_gain / test_gain: accuracy of the best found architecture at equal "
         "or lower FLOPs minus the baseline's; dominated_by: found trials at least as accurate "
         "and no more costly, better in one. Accuracies (%) come from one proxy training "
         "(one seed), not a full training: only the confirmed section says whether an "
         "architecture beats a reference.")
TRIAL_COLUMNS = ("study", "trial", "state", "baseline", "feasible", "width", *STAGE_COLUMNS,
                 "MFLOPs", "params_M", "latency_ms", "measured_ms", "measured_p90_ms",
                 "val_acc", "last_val_acc", "test_acc", "train_s", "epochs", "seed", "reason",
                 "trained", "arch")


def _stage_column(params: dict[str, Any], key: str) -> str:
    values = [params.get(f"{n}.{key}") for n in STAGE_NAMES]
    if all(v is None for v in values):
        return ""
    if key in _SHORT:
        return "/".join(_SHORT[key].get(v, "") for v in values)
    return "/".join("" if v is None else f"{v:g}" for v in values)


MEASURED_KEY = "measured_latency"  # study attribute: the measured Pareto set after a search


def measured_latency(study: optuna.Study) -> dict[int, dict]:
    """The stored measurements by trial number (empty when none were made)."""
    return {int(k): v for k, v in study.user_attrs.get(MEASURED_KEY, {}).items()}


def _markdown(df: pd.DataFrame, **kwargs: Any) -> str:
    return df.to_markdown(index=False, **kwargs)


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per trial, infeasible, pruned and failed ones included with their reason.

    Per-stage choices read stage1/.../stage6; SE is `-` (none), `r` (as in the paper), `a` (all).
    """
    measured = measured_latency(study)
    rows = []
    for t in study.get_trials(deepcopy=False):
        a = t.user_attrs
        p = a.get("space_params") or t.params  # the choices, snapped to the space's values
        m = measured.get(t.number, {})
        row: dict[str, Any] = {
            "study": study.study_name, "trial": t.number, "state": t.state.name,
            "baseline": a.get("baseline") or "", "feasible": a.get("feasible"),
            "width": p.get("width"),
        }
        for key in ALL_KEYS:
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
