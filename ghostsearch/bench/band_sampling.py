"""What keeping every candidate in the band costs: for each sampler, the proposals asked of
the wrapped Optuna sampler per trial (rejection on the analytic FLOPs count), the fallbacks to
a uniform draw, and the CPU-seconds of sampling per trial, over a study of N trials whose
objective is a stand-in computed from the config (no training), so only sampling is timed.

    python scripts/band_sampling.py --budget 200MFLOPs --trials 40
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import optuna

from ghostsearch import analytic_counts, parse_budget
from ghostsearch.cli.common import ArgumentParser
from ghostsearch.provenance import provenance
from ghostsearch.spaces.limits import DEFAULT_BAND, Limits
from ghostsearch.spaces.sampler import SAMPLERS, BandSampler, base_sampler
from ghostsearch.spaces.space import load_space


def measure(sampler_name: str, space_name: str, budget: int, band: float, trials: int,
            seed: int = 0) -> dict[str, object]:
    space = load_space(space_name)
    limits = Limits(budget, band=band)
    multi = sampler_name == "nsga2"
    sampler = BandSampler(base_sampler(sampler_name, seed, multi), space, limits, seed)
    study = optuna.create_study(directions=["maximize", "minimize"] if multi else ["maximize"],
                                sampler=sampler)
    cpu, flops = [], []
    for _ in range(trials):
        start = time.process_time()
        trial = study.ask()
        cfg = space.suggest(trial)
        cpu.append(time.process_time() - start)
        counts = analytic_counts(cfg)
        flops.append(counts.flops)
        stand_in = counts.params / counts.flops  # any deterministic function of the config
        study.tell(trial, [stand_in, counts.flops / 1e6] if multi else stand_in)
    draws = list(sampler.draws.values())
    return {"sampler": sampler_name, "trials": trials, "band": limits.describe_band(),
            "in_band": sum(band * budget <= f <= budget for f in flops),
            "proposals_mean": statistics.fmean(draws), "proposals_max": max(draws),
            "fallbacks": sampler.fallbacks,
            "cpu_s_per_trial_mean": statistics.fmean(cpu), "cpu_s_per_trial_max": max(cpu)}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget", default="200MFLOPs")
    p.add_argument("--space", default="ghostnet")
    p.add_argument("--band", type=float, default=DEFAULT_BAND)
    p.add_argument("--trials", type=int, default=40)
    p.add_argument("--samplers", default=",".join(SAMPLERS))
    p.add_argument("--json", default=None, help="also write the figures here")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    import torch

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    args = parse_args(argv)
    budget = parse_budget(args.budget)
    rows = [measure(s.strip(), args.space, budget, args.band, args.trials)
            for s in args.samplers.split(",") if s.strip()]
    for r in rows:
        print(json.dumps(r))
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "provenance": provenance(args)},
                                              indent=2) + "\n")
    return 0
