"""Do parallel workers propose the same architectures? Two worker processes share one study
(a journal file) with TPE and Optuna's constant liar; their samplers are seeded either alike or
apart (as ghostsearch's `sampler_seed` does). The objective stands in for a training: a short
sleep and a score from the architecture. Prints how many proposals were duplicates.

    python scripts/sampler_duplicates.py --trials 20 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import optuna

from ghostsearch.cli.common import ArgumentParser
from ghostsearch.search.study import sampler_seed
from ghostsearch.spaces.space import load_space


def _worker(path: str, seed: int, trials: int) -> None:
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    space = load_space("ghostnet")
    storage = optuna.storages.JournalStorage(JournalFileBackend(path))
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=10, constant_liar=True)
    study = optuna.load_study(study_name="dup", storage=storage, sampler=sampler)

    def objective(trial: optuna.Trial) -> float:
        cfg = space.suggest(trial)
        time.sleep(0.05)  # both workers' trials overlap, as trainings do
        return float(hash(cfg.short()) % 1000) / 10

    study.optimize(objective, n_trials=trials)


def duplicates(seeds: tuple[int, int], trials: int) -> dict[str, int]:
    from optuna.storages.journal import JournalFileBackend

    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "journal.log")
        storage = optuna.storages.JournalStorage(JournalFileBackend(path))
        optuna.create_study(study_name="dup", storage=storage, direction="maximize")
        ctx = mp.get_context("spawn")
        procs = [ctx.Process(target=_worker, args=(path, s, trials)) for s in seeds]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        study = optuna.load_study(study_name="dup", storage=storage)
        keys = [json.dumps(t.params, sort_keys=True) for t in study.get_trials()]
    return {"proposals": len(keys), "duplicates": len(keys) - len(set(keys))}


def main(argv: Sequence[str] | None = None) -> int:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=20, help="trials per worker (default 20)")
    p.add_argument("--repeats", type=int, default=3, help="studies per setting (default 3)")
    args = p.parse_args(argv)
    for name in ("alike", "apart"):
        rows = []
        for r in range(args.repeats):
            seeds = (r, r) if name == "alike" else (sampler_seed(r, 1, 0), sampler_seed(r, 2, 0))
            rows.append(duplicates(seeds, args.trials))
        total = sum(x["proposals"] for x in rows)
        dup = sum(x["duplicates"] for x in rows)
        print(json.dumps({"seeds": name, "constant_liar": True, "studies": args.repeats,
                          "proposals": total, "duplicates": dup}))
    return 0
