"""A ground truth for a search space: architectures sampled uniformly within a budget, plus the
reference GhostNets, each trained with one long protocol and tested on the full test set.

The table is the yardstick every cheap ranking (short proxies, training-free scores, search
modes) is measured against. It is built one (architecture, seed) unit at a time, a CSV row
written as each finishes, so a killed run resumes where it stopped.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import platform
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from ghostsearch import ConfigError, analytic_counts, load_config, save_config, units
from ghostsearch.bank import Bank, data_fingerprint, model_key
from ghostsearch.cache import cache_root
from ghostsearch.search.proxy import proxy_config
from ghostsearch.search.storage import make_storage
from ghostsearch.spaces.space import SearchSpace, sample_band, sample_points
from ghostsearch.train.full import ModelSpec, run_spec, train_full
from ghostsearch.train.recipe import Recipe
from ghostsearch.train.runspec import unit_folder

COLUMNS = ("arch_id", "kind", "name", "seed", "mflops", "params", "proxy_mflops", "val_acc",
           "test_acc", "val_curve", "train_seconds", "total_seconds", "threads", "finished_at")


@dataclass(frozen=True)
class Unit:
    arch_id: str
    seed: int


def plan(space: SearchSpace, budget_flops: int, n_sampled: int, reference_widths: list[float],
         second_seed: int, seed: int = 0) -> list[dict[str, Any]]:
    """The architectures of the table: references first, then the uniform sample."""
    archs = []
    for w in reference_widths:
        archs.append({"arch_id": f"ref-{w:.2f}x", "kind": "reference",
                      "name": f"GhostNet {w:g}x", "params": space.reference_params(w)})
    for i, params in enumerate(sample_points(space, n_sampled, seed, budget_flops=budget_flops)):
        archs.append({"arch_id": f"s{i:03d}", "kind": "sampled", "name": f"sample {i}",
                      "params": params})
    return archs


@dataclass(frozen=True)
class Band:
    """Architectures sampled uniformly within [low, high] MFLOPs until the band holds `total`
    sampled ones (those already in the table count); `second_seed` of the new ones, and the
    widest reference GhostNet within `high`, are also trained with more seeds."""

    low: float
    high: float
    total: int
    second_seed: int = 0

    @property
    def prefix(self) -> str:
        return f"b{self.low:g}-{self.high:g}-"

    @classmethod
    def parse(cls, text: str) -> Band:
        """`LO:HI:N` or `LO:HI:N:K` (MFLOPs, count, how many new ones get a second seed)."""
        parts = text.split(":")
        try:
            low, high, total = float(parts[0]), float(parts[1]), int(parts[2])
            second = int(parts[3]) if len(parts) == 4 else 0
            if len(parts) not in (3, 4):
                raise ValueError
        except (ValueError, IndexError):
            raise ConfigError(f"--band {text!r}: expected LO:HI:N[:K] (MFLOPs, architectures, "
                              "second seeds), for example 170:200:30:6") from None
        if not 0 <= low < high or total < 1 or second < 0:
            raise ConfigError(f"--band {text!r}: need 0 <= LO < HI, N >= 1 and K >= 0")
        return cls(low, high, total, second)


def extend_plan(out: Path, space: SearchSpace, bands: list[Band],
                reference_seeds: int = 3) -> list[str]:
    """Add each band's architectures (and its widest reference) to a planned table; the plan on
    disk gains their configs and units: seed-0 units first, band by band, then the extra seeds.

    A band already in the plan is left as it is, so a rerun with the same options resumes.
    Returns the added architecture ids."""
    meta = read_plan(out)
    done_bands = [Band(**b) for b in meta.get("bands", [])]
    existing = {a: load_config(out / "configs" / f"{a}.json") for a in meta["archs"]}
    kinds = {a: json.loads((out / "configs" / f"{a}.json").read_text())["metadata"]["kind"]
             for a in meta["archs"]}
    first: list[Unit] = []
    later: list[Unit] = []
    archs: list[dict[str, Any]] = []
    for band in bands:
        if band in done_bands:
            continue
        lo, hi = int(band.low * 1e6), int(band.high * 1e6)
        widths = [w for w in space.reference_widths
                  if analytic_counts(space.build_config(space.reference_params(w))).flops <= hi]
        if widths:
            w = max(widths)
            ref_id = f"ref-{w:.2f}x"
            if ref_id not in existing and ref_id not in [a["arch_id"] for a in archs]:
                archs.append({"arch_id": ref_id, "kind": "reference", "name": f"GhostNet {w:g}x",
                              "params": space.reference_params(w)})
                first.append(Unit(ref_id, 0))
                later += [Unit(ref_id, s) for s in range(1, reference_seeds)]
        held = [a for a, c in existing.items() if kinds[a] == "sampled"
                and lo <= analytic_counts(c).flops <= hi]
        need = max(0, band.total - len(held))
        seed = 1 + len(done_bands) + bands.index(band)
        draws = sample_band(space, need, seed, low_flops=lo, high_flops=hi,
                            exclude=set(existing.values()))
        for i, params in enumerate(draws.points):
            a = f"{band.prefix}{i:02d}"
            archs.append({"arch_id": a, "kind": "sampled", "name": f"band sample {a}",
                          "params": params})
            first.append(Unit(a, 0))
            if i < band.second_seed:
                later.append(Unit(a, 1))
        meta.setdefault("bands", []).append(dataclasses.asdict(band))
        meta.setdefault("band_draws", []).append(
            {**dataclasses.asdict(band), "already_in_band": len(held), "sampling_seed": seed,
             **draws.summary()})
    if not archs:
        return []
    for a in archs:
        cfg = space.build_config(a["params"])
        save_config(cfg, out / "configs" / f"{a['arch_id']}.json",
                    metadata={"kind": a["kind"], "name": a["name"], "space_params": a["params"]})
    meta["archs"] = meta["archs"] + [a["arch_id"] for a in archs]
    later.sort(key=lambda u: u.seed)  # stable: band order within a seed
    meta["units"] = meta["units"] + [dataclasses.asdict(u) for u in first + later]
    (out / "protocol.json").write_text(json.dumps(meta, indent=2) + "\n")
    return [a["arch_id"] for a in archs]


def write_plan(out: Path, space: SearchSpace, archs: list[dict[str, Any]],
               units: list[Unit], meta: dict[str, Any]) -> None:
    """Every config as JSON and the protocol, before any training: the pool is fixed on disk."""
    (out / "configs").mkdir(parents=True, exist_ok=True)
    for a in archs:
        cfg = space.build_config(a["params"])
        save_config(cfg, out / "configs" / f"{a['arch_id']}.json",
                    metadata={"kind": a["kind"], "name": a["name"], "space_params": a["params"]})
    meta = {**meta, "space": space.name, "space_sha256": space.fingerprint(),
            "archs": [a["arch_id"] for a in archs],
            "units": [dataclasses.asdict(u) for u in units]}
    (out / "protocol.json").write_text(json.dumps(meta, indent=2) + "\n")


def read_plan(out: Path) -> dict[str, Any]:
    path = out / "protocol.json"
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: not a ground-truth protocol ({e})") from None


def retrain_units(rows: list[dict[str, Any]], top: int, seeds: int) -> list[Unit]:
    """Units that retrain the references and the `top` best sampled architectures (by their
    seed-0 validation accuracy in the table's `rows`) with seeds 0 to `seeds - 1`, references
    first, in table order.

    The best of a one-seed table is partly luck (the winner's curse); these seeds measure how
    much, and say whether the space holds an architecture that really beats the reference."""
    if top < 0 or seeds < 1:
        raise ConfigError(f"--retrain-top {top} / --retrain-seeds {seeds}: need top >= 0 and "
                          "seeds >= 1")
    first = {r["arch_id"]: r for r in rows if int(r["seed"]) == 0}
    refs = [a for a, r in first.items() if r["kind"] == "reference"]
    sampled = sorted((a for a, r in first.items() if r["kind"] == "sampled"),
                     key=lambda a: (-float(first[a]["val_acc"]), a))
    if len(sampled) < top:
        raise ConfigError(f"--retrain-top {top}: only {len(sampled)} sampled architectures have "
                          "a finished seed-0 run; finish the table first")
    return [Unit(a, s) for a in refs + sampled[:top] for s in range(seeds)]


def against_reference(rows: list[dict[str, Any]], arch_ids: list[str],
                      reference: str) -> list[dict[str, Any]]:
    """Each architecture's test accuracy over its seeds against the reference's, with the
    interval and verdict words of `ghostsearch confirm` (noise pooled over these arms,
    adjusted for the number of architectures compared)."""
    from ghostsearch.confirm import Candidate, verdicts

    first = {r["arch_id"]: r for r in rows}  # name and FLOPs of each architecture
    ids = [reference] + [a for a in arch_ids if a != reference]
    cands = [Candidate(first[a]["name"], {}, int(float(first[a]["mflops"]) * 1e6),
                       a == reference) for a in ids]
    runs = [{"key": first[r["arch_id"]]["name"], "seed": int(r["seed"]),
             "test_acc": float(r["test_acc"]), "val_acc": float(r.get("val_acc") or "nan")}
            for r in sorted(rows, key=lambda r: int(r["seed"])) if r["arch_id"] in ids]
    table = {v["key"]: v for v in verdicts(cands, runs)}
    out = []
    for a in arch_ids:
        v = table[first[a]["name"]]
        out.append({"arch_id": a, "name": first[a]["name"],
                    "test_acc": [x["test_acc"] for x in runs if x["key"] == v["key"]],
                    "diff": v.get("diff_vs_ref"), "ci_half": v.get("ci_half"),
                    "verdict": v.get("verdict", "")})
    return out


def read_rows(csv_path: Path) -> list[dict[str, Any]]:
    if not csv_path.exists():
        return []
    with csv_path.open() as f:
        return list(csv.DictReader(f))


def done_units(csv_path: Path) -> set[Unit]:
    return {Unit(r["arch_id"], int(r["seed"])) for r in read_rows(csv_path)}


def append_row(csv_path: Path, row: dict[str, Any],
               columns: Sequence[str] = COLUMNS) -> None:
    """One row, flushed to disk at once: what finished is never lost."""
    new = not csv_path.exists()
    with csv_path.open("a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        if new:
            w.writeheader()
        w.writerow({k: row[k] for k in columns})
        f.flush()
        os.fsync(f.fileno())


# -- one unit, in a worker process ------------------------------------------------------------

_worker_data = None


def _init_worker(threads: int, data_kwargs: dict[str, Any]) -> None:
    import torch

    from ghostsearch.train.data import load_data

    global _worker_data
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the queue's opening says nothing
    torch.set_num_threads(threads)
    _worker_data = load_data(**data_kwargs, progress=False)


def _row(out: str, arch_id: str, seed: int, proto: Recipe, data: Any, val_acc: float,
         test_acc: float, curve: list[float], train_seconds: float, total_seconds: float,
         threads: int) -> dict[str, Any]:
    cfg = load_config(Path(out) / "configs" / f"{arch_id}.json")
    meta = json.loads((Path(out) / "configs" / f"{arch_id}.json").read_text())["metadata"]
    counts = analytic_counts(cfg)
    return {"arch_id": arch_id, "kind": meta["kind"], "name": meta["name"], "seed": seed,
            "mflops": round(counts.flops / 1e6, 3), "params": counts.params,
            "proxy_mflops": round(analytic_counts(proxy_config(cfg, data, proto)).flops / 1e6,
                                  3),
            "val_acc": val_acc, "test_acc": test_acc, "val_curve": json.dumps(curve),
            "train_seconds": round(train_seconds, 1), "total_seconds": round(total_seconds, 1),
            "threads": threads, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S")}


def _spec(out: str | Path, arch_id: str, data: Any, proto: Recipe) -> Any:
    cfg = load_config(Path(out) / "configs" / f"{arch_id}.json")
    return ModelSpec(config=proxy_config(cfg, data, proto).to_dict(),
                     num_classes=data.num_classes)


def train_unit(out: str, arch_id: str, seed: int, protocol: dict[str, Any],
               log: Callable[[str], None] | None = None,
               on_step: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Train one (architecture, seed) with the protocol; the row of the table. The unit runs
    through the same trainer as `ghostsearch confirm` (`train_full`), checkpointing every epoch,
    so a killed run resumes the unit from its last finished epoch."""
    import torch

    start = time.perf_counter()
    proto = Recipe(**protocol)
    spec = _spec(out, arch_id, _worker_data, proto)
    folder = unit_folder(cache_root() / "units", arch_id,
                         run_spec(spec, _worker_data, proto, seed, "cpu"))
    record = train_full(spec, _worker_data, proto, folder, seed=seed, device="cpu",
                        log=log or (lambda message: None), on_step=on_step)
    (folder / "last.pt").unlink(missing_ok=True)  # the row keeps what matters
    return _row(out, arch_id, seed, proto, _worker_data, record["val_acc"], record["test_acc"],
                [h["val_acc"] for h in record["history"]], record["train_seconds"],
                time.perf_counter() - start, torch.get_num_threads())


UNITS_STUDY = "ground-truth-units"


def units_study(out: Path) -> optuna.Study:
    """The table's queue of units (`ghostsearch.units`), in units.db beside runs.csv: leases
    and heartbeats, so that workers of several invocations (or machines sharing the folder)
    never train one unit twice, and a killed worker's unit is taken back by a rerun."""
    storage = make_storage(f"sqlite:///{Path(out) / 'units.db'}")
    return optuna.create_study(study_name=UNITS_STUDY, storage=storage, direction="maximize",
                               load_if_exists=True)


def _drain(out: str, protocol: dict[str, Any]) -> int:
    """A pool worker: train the table's waiting units until none is left; each unit's row is
    kept in its trial (the parent writes it to runs.csv)."""
    study = units_study(Path(out))
    csv_path = Path(out) / "runs.csv"

    def train(arch_id: str, seed: int, beat: Any, step_beat: Any) -> dict[str, Any]:
        return train_unit(out, arch_id, seed, protocol, log=beat, on_step=step_beat)

    def done() -> set[tuple[str, int]]:
        return set(units.finished(study)) | {(u.arch_id, u.seed) for u in done_units(csv_path)}

    return units.run(study, train, done=done, keep=COLUMNS, log=lambda message: None)


@dataclass(frozen=True)
class BankUse:
    """The table's tie to the reference bank: the bank key of each reference architecture."""

    bank: Bank
    keys: dict[str, str]
    data: Any

    @classmethod
    def make(cls, bank: Bank, out: Path, arch_ids: list[str], protocol: Recipe,
             data: Any) -> BankUse:
        data_id = data_fingerprint(data)
        keys = {}
        for a in arch_ids:
            meta = json.loads((out / "configs" / f"{a}.json").read_text())["metadata"]
            if meta["kind"] == "reference":
                cfg = load_config(out / "configs" / f"{a}.json")
                keys[a] = model_key(cfg, data, protocol, data_id)
        return cls(bank, keys, data)

    def stored_row(self, out: Path, unit: Unit, protocol: Recipe) -> dict[str, Any] | None:
        """The table's row of `unit` from a run the bank holds, or None."""
        run = (self.bank.runs(self.keys[unit.arch_id]).get(unit.seed)
               if unit.arch_id in self.keys else None)
        if run is None:
            return None
        curve = json.loads(run["val_curve"]) if run.get("val_curve") else []
        return _row(str(out), unit.arch_id, unit.seed, protocol, self.data, run["val_acc"],
                    run["test_acc"], curve, run["train_seconds"], 0.0, int(run["threads"]))

    def store(self, row: dict[str, Any]) -> bool:
        if row["arch_id"] not in self.keys:
            return False
        return self.bank.add(self.keys[row["arch_id"]], row["name"], int(row["seed"]),
                             row["val_acc"], row["test_acc"], row["train_seconds"],
                             "ground truth", threads=row["threads"],
                             val_curve=json.loads(row["val_curve"]))


def run_units(out: Path, todo_units: list[Unit], protocol: Recipe,
              data_kwargs: dict[str, Any], workers: int, threads: int,
              on_row: Callable[[dict[str, Any]], None] | None = None,
              bank: BankUse | None = None, poll_s: float = 5.0) -> Iterator[dict[str, Any]]:
    """Train the units not yet in the table in `workers` processes through the unit runner
    (`ghostsearch.units`, on `units_study`); yield each row as it is written to runs.csv.
    A reference run that the bank holds is written from it, not trained; a reference trained
    here goes into the bank. This process alone writes runs.csv: a unit that finished in the
    queue but not in the table (its invocation killed in between) is written on the next."""
    from concurrent.futures import wait

    from .pool import worker_pool

    csv_path = out / "runs.csv"
    study = units_study(out)

    def emit(row: dict[str, Any], trained: bool) -> dict[str, Any]:
        append_row(csv_path, row)
        if trained and bank is not None:
            bank.store(row)
        if on_row is not None:
            on_row(row)
        return row

    def sync() -> Iterator[dict[str, Any]]:
        have = done_units(csv_path)
        for (arch_id, seed), t in units.finished(study).items():
            if Unit(arch_id, seed) not in have:
                yield emit({k: t.user_attrs[k] for k in COLUMNS}, trained=True)

    yield from sync()
    have = done_units(csv_path)
    queued = set(units.unfinished(study))
    for u in todo_units:  # in plan order: references first
        if u in have or (u.arch_id, u.seed) in queued:
            continue
        row = bank.stored_row(out, u, protocol) if bank is not None else None
        if row is not None:
            yield emit(row, trained=False)
            continue
        units.queue(study, u.arch_id, u.seed, units.unit_count(study))
    if not units.unfinished(study):
        return
    proto = dataclasses.asdict(protocol)
    with worker_pool(workers, _init_worker, (threads, data_kwargs)) as pool:
        running = {pool.submit(_drain, str(out), proto) for _ in range(workers)}
        while running:
            finished, running = wait(running, timeout=poll_s)
            yield from sync()
            for fut in finished:
                fut.result()  # a worker's error (not a unit's: those are retried) stops here
    yield from sync()


def machine() -> str:
    return f"{platform.machine()} {platform.processor() or ''} ({os.cpu_count()} cores)".strip()
