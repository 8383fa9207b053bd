"""The reference bank: runs of the reference GhostNets stored once per model, protocol and data,
so that every confirmation (and every ground-truth table) that trains the same reference on the
same images with the same recipe reuses them and pays only for its candidates.

A run is keyed by its RunSpec (what determines it): the exact model trained (its proxy
config), the recipe's identity, the content of the data (every image and label of the
training, held-out and test splits, hashed), the device class and the hash of the model and
training code. The seed names the run within its key; new seeds add runs. Runs stored under
the keys of ghostsearch < 0.5 (no code, no device) are found and named, never reused. The bank
is a CSV file, one row per run, appended under a file lock as each run finishes (workers on
one machine share it); the first run stored for a (key, seed) stays.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock

from .errors import ConfigError
from .search.proxy import proxy_config
from .train.data import content_fingerprint as data_fingerprint
from .train.full import ModelSpec
from .train.runspec import RunSpec

COLUMNS = ("key", "name", "seed", "val_acc", "test_acc", "train_seconds", "threads", "torch",
           "source", "finished_at", "val_curve")
FILE_NAME = "reference_bank.csv"

__all__ = ["COLUMNS", "FILE_NAME", "Bank", "data_fingerprint", "legacy_key", "model_key",
           "model_legacy_key", "model_spec"]


def legacy_key(spec: dict[str, Any], protocol: Any, data_id: str) -> str:
    """The key of a run stored before runs were keyed by RunSpec (ghostsearch < 0.5: model,
    recipe and data only, not the code or the device); such runs are found, never reused."""
    if hasattr(protocol, "identity"):  # a Recipe: the knobs that determine a run
        proto = protocol.identity()
    else:
        proto = dataclasses.asdict(protocol) if dataclasses.is_dataclass(protocol) else protocol
    text = json.dumps([spec, proto, data_id], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def model_spec(cfg: Any, data: Any, recipe: Any) -> dict[str, Any]:
    """The model spec (as a dict) that `ghostsearch confirm` and the ground truth train for the
    deployment config `cfg`: its proxy form for the data's classes and size."""
    spec = ModelSpec(config=proxy_config(cfg, data, recipe).to_dict(),
                     num_classes=data.num_classes)
    return dataclasses.asdict(spec)


def model_key(cfg: Any, data: Any, recipe: Any, data_id: str, device: str = "cpu") -> str:
    """The bank key of `cfg` trained in its proxy form with `recipe` on data with content
    fingerprint `data_id` on a `device`, by this code: its RunSpec's key."""
    return RunSpec(model=model_spec(cfg, data, recipe), recipe=recipe.identity(),
                   data=data_id, device=device).key()


def model_legacy_key(cfg: Any, data: Any, recipe: Any, data_id: str) -> str:
    return legacy_key(model_spec(cfg, data, recipe), recipe, data_id)


@dataclass(frozen=True)
class Bank:
    """The bank in the CSV file at `path` (created with its header on the first run)."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @classmethod
    def beside(cls, out: str | Path) -> Bank:
        """The default bank of a results folder `out`: one file next to it, shared by every
        study and table under the same parent (results/reference_bank.csv)."""
        return cls(Path(out).resolve().parent / FILE_NAME)

    def rows(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        try:
            with self.path.open(newline="") as f:
                rows = list(csv.DictReader(f))
        except (OSError, csv.Error) as e:
            raise ConfigError(f"reference bank {self.path}: cannot read ({e}); pass "
                              "--no-bank or another --bank") from None
        if rows and set(COLUMNS) - set(rows[0]):
            raise ConfigError(f"reference bank {self.path}: not a bank file (columns "
                              f"{', '.join(COLUMNS)} expected); pass another --bank")
        for r in rows:
            r["seed"] = int(r["seed"])
            for k in ("val_acc", "test_acc", "train_seconds"):
                r[k] = float(r[k])
        return rows

    def runs(self, key: str) -> dict[int, dict[str, Any]]:
        """The stored runs of `key` by seed (the first stored of each seed)."""
        out: dict[int, dict[str, Any]] = {}
        for r in self.rows():
            if r["key"] == key:
                out.setdefault(r["seed"], r)
        return out

    def add(self, key: str, name: str, seed: int, val_acc: float, test_acc: float,
            train_seconds: float, source: str, threads: int | str | None = None,
            val_curve: list[float] | None = None, finished_at: str | None = None) -> bool:
        """Store one run unless its (key, seed) is stored already; True when it was added.
        `threads`: torch threads of the run ("" unknown; default this process's);
        `val_curve`: validation accuracy after each epoch, where the trainer kept it;
        `finished_at`: when the run ended (default now)."""
        import torch

        row = {"key": key, "name": name, "seed": seed, "val_acc": val_acc,
               "test_acc": test_acc, "train_seconds": round(float(train_seconds), 1),
               "threads": torch.get_num_threads() if threads is None else threads,
               "torch": torch.__version__, "source": source,
               "finished_at": finished_at or datetime.datetime.now().isoformat(
                   timespec="seconds"),
               "val_curve": json.dumps(val_curve) if val_curve is not None else ""}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # workers of one machine share the file: check and append under one lock
        with FileLock(str(self.path) + ".lock"):
            if seed in self.runs(key):
                return False
            new = not self.path.exists() or self.path.stat().st_size == 0
            with self.path.open("a", newline="") as f:
                w = csv.DictWriter(f, COLUMNS, lineterminator="\n")
                if new:
                    w.writeheader()
                w.writerow(row)
        return True
