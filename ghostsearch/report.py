"""The trials of a study as a pandas table, and the short summary a search prints at the end."""

from __future__ import annotations

import optuna
import pandas as pd

from .space import STAGE_KEYS, STAGE_NAMES

_ABBREV = {"ghost_ratio": "s", "cheap_kernel": "d", "kernel": "k", "expansion": "e",
           "depth": "n", "se": "se"}


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per trial, infeasible, pruned and failed ones included with their reason."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        a, p = t.user_attrs, t.params
        row = {
            "trial": t.number,
            "state": t.state.name,
            "baseline": a.get("baseline") or "",
            "feasible": a.get("feasible"),
            "width": p.get("width"),
        }
        for key in STAGE_KEYS:  # one compact column per choice, stages joined with '/'
            values = [p.get(f"{n}.{key}") for n in STAGE_NAMES]
            row[_ABBREV[key]] = "/".join("" if v is None else f"{v:g}" if isinstance(
                v, float) else str(v)[0] if key == "se" else str(v) for v in values)
        row.update({
            "MFLOPs": a["flops"] / 1e6 if "flops" in a else None,
            "params_M": a["params"] / 1e6 if "params" in a else None,
            "latency_ms": a.get("latency_ms"),
            "val_acc": a.get("val_acc"),
            "test_acc": a.get("test_acc"),
            "train_s": a.get("train_seconds"),
            "seed": a.get("seed"),
            "reason": a.get("reason", ""),
        })
        rows.append(row)
    return pd.DataFrame(rows)


def summary_table(study: optuna.Study, top: int = 5) -> pd.DataFrame:
    """The best `top` feasible trials plus every baseline, by validation accuracy."""
    df = trials_frame(study)
    if df.empty:
        return df
    done = df[(df.state == "COMPLETE") & df.val_acc.notna()]
    best = done[done.feasible.astype(bool)].nlargest(top, "val_acc")
    baselines = done[done.baseline != ""]
    out = pd.concat([best, baselines]).drop_duplicates("trial").sort_values(
        "val_acc", ascending=False)
    return out[["trial", "baseline", "feasible", "width", "MFLOPs", "params_M", "val_acc",
                "test_acc", "train_s"]]
