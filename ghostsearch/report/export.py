"""Any trial, the best one or the Pareto set, to a config file that rebuilds the exact model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna

from ..arch.config import NetConfig, save_config
from ..errors import ConfigError
from ..provenance import provenance
from ..search.study import best_feasible


def trial_metadata(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """What a user needs to trust an exported architecture: costs, accuracies, protocol."""
    a = trial.user_attrs
    settings = study.user_attrs.get("settings", {})
    return {
        "study": study.study_name,
        "trial": trial.number,
        "baseline": a.get("baseline"),
        "flops": a.get("flops"),
        "params": a.get("params"),
        "latency_ms": a.get("latency_ms"),
        "val_acc": a.get("val_acc"),
        "test_acc": a.get("test_acc"),
        "val_curve": a.get("val_curve"),
        "train_seconds": a.get("train_seconds"),
        "seed": a.get("seed"),
        "budget_flops": settings.get("budget_flops"),
        "space": settings.get("space"),
        "data": settings.get("data"),
        "proxy_protocol": settings.get("protocol"),
        "params_chosen": a.get("space_params") or trial.params,
        "preprocessing": study.user_attrs.get("preprocessing"),
        "versions": {k: v for k, v in provenance().items() if k != "argv"},
    }


def export_trial(study: optuna.Study, number: int, path: str | Path) -> Path:
    """Write trial `number`'s deployment NetConfig with its metadata to `path`."""
    trials = study.get_trials(deepcopy=False)
    if not 0 <= number < len(trials):
        raise ConfigError(f"--trial {number}: study {study.study_name!r} has trials "
                          f"0..{len(trials) - 1}")
    trial = trials[number]
    if "config" not in trial.user_attrs:
        raise ConfigError(f"--trial {number}: it recorded no architecture ({trial.state.name})")
    cfg = NetConfig.from_dict(trial.user_attrs["config"])
    return save_config(cfg, path, metadata=trial_metadata(study, trial))


def confirmed_winner(path: str | Path) -> dict[str, Any] | None:
    """The `confirmed` block of an existing best_arch.json (None: none, or not confirmed)."""
    import json

    try:
        meta = json.loads(Path(path).read_text()).get("metadata") or {}
    except (OSError, ValueError, AttributeError):
        return None
    block = meta.get("confirmed")
    return block if isinstance(block, dict) else None


def export_best(study: optuna.Study, out_dir: str | Path) -> Path | None:
    """`best_arch.json`: the highest proxy validation accuracy within all limits, or None if
    none. One rule for "best": once `ghostsearch confirm` has written its winner there, the
    confirmed winner stays (the long protocol over seeds outranks one proxy run); the proxy's
    best can still be exported with `export_trial`."""
    best = best_feasible(study)
    if best is None:
        return None
    path = Path(out_dir) / "best_arch.json"
    if confirmed_winner(path) is not None:
        return path
    return export_trial(study, best.number, path)
