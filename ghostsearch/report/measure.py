"""After a latency-limited search: the final Pareto set measured on the device and runtime its
latency table predicts for (eager PyTorch or onnxruntime), beside the prediction.

The search refuses candidates on predicted latency (nothing over the limit is built or trained);
what it hands over is then checked by measurement. This runs after every training has ended, so
no measurement shares the device with a training. Results are stored in the study (user
attribute `measured_latency`), so the report shows them and a resumed study keeps them.
"""

from __future__ import annotations

import optuna
import pandas as pd
import torch

from ..arch.config import NetConfig
from ..errors import ConfigError
from ..latency.measure import device_name
from ..latency.table import LatencyTable
from ..log import logger
from .frame import MEASURED_KEY, pareto_front, trials_frame


def front_trials(study: optuna.Study) -> list[int]:
    """Trial numbers to measure: the front of validation accuracy vs predicted latency among
    feasible completed trials, and every completed baseline (for comparison)."""
    df = trials_frame(study)
    front = pareto_front(df, "latency_ms")
    done = df[(df.state == "COMPLETE") & df.val_acc.notna() & df.latency_ms.notna()]
    baselines = done[done.baseline != ""]
    return sorted(set(front.trial.astype(int)) | set(baselines.trial.astype(int)))


def measure_front(study: optuna.Study, table: LatencyTable, *, limit_ms: float | None = None,
                  runs: int = 50) -> pd.DataFrame:
    """Measure the deployment latency of `front_trials(study)` as `table` was measured (same
    device type, threads and batch 1) and store it in the study; returns one row per trial."""
    kind = table.device_type
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError("the latency table was measured on CUDA and this machine has none; "
                          "measure the Pareto set where the table was built")
    here = device_name(torch.device(kind))
    trials = study.get_trials(deepcopy=False)
    stored = dict(study.user_attrs.get(MEASURED_KEY, {}))
    rows = []
    for number in front_trials(study):
        t = trials[number]
        cfg = NetConfig.from_dict(t.user_attrs["config"])
        median, p90 = table.measure(cfg, runs=runs)
        predicted = t.user_attrs["latency_ms"]
        row = {"trial": number, "baseline": t.user_attrs.get("baseline") or "",
               "predicted_ms": predicted, "measured_ms": median, "measured_p90_ms": p90,
               "error_pct": 100 * (predicted - median) / median,
               "within_limit": None if limit_ms is None else median <= limit_ms,
               "device": here, "threads": table.threads,
               "mode": "cuda-graph" if kind == "cuda" else table.runtime}
        rows.append(row)
        stored[str(number)] = row
    study.set_user_attr(MEASURED_KEY, stored)
    if here != table.device:
        logger.warning(f"note: the table was built on {table.device!r}, measured here on {here!r}")
    return pd.DataFrame(rows)
