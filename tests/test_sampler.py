from __future__ import annotations

import optuna
import pytest

from ghostsearch import analytic_counts
from ghostsearch.spaces.limits import Limits
from ghostsearch.spaces.sampler import SAMPLERS, BandSampler, base_sampler
from ghostsearch.spaces.space import load_space


@pytest.mark.parametrize("name", SAMPLERS)
def test_every_sampler_proposes_only_in_the_band(name):
    space = load_space("ghostnet")
    limits = Limits(budget_flops=200_000_000, band=0.85)
    multi = name == "nsga2"
    sampler = BandSampler(base_sampler(name, 0, multi, n_startup_trials=4), space, limits, seed=0)
    study = optuna.create_study(directions=["maximize", "minimize"] if multi else ["maximize"],
                                sampler=sampler)
    flops = []
    for _ in range(8):
        trial = study.ask()
        cfg = space.suggest(trial)
        f = analytic_counts(cfg).flops
        flops.append(f)
        acc = cfg.stem_channels / 10  # a stand-in accuracy: wider stems score higher
        study.tell(trial, [acc, f / 1e6] if multi else acc)
    assert all(170_000_000 <= f <= 200_000_000 for f in flops)
    assert sorted(sampler.draws) == list(range(8))
    assert all(n >= 1 for n in sampler.draws.values())


def test_enqueued_points_are_kept_as_they_are():
    space = load_space("ghostnet")
    sampler = BandSampler(base_sampler("tpe", 0), space, Limits(200_000_000), seed=0)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    ref = space.reference_params(0.5)  # 42 MFLOPs: far below the band
    study.enqueue_trial(ref)
    trial = study.ask()
    cfg = space.suggest(trial)
    assert cfg == space.build_config(ref) and trial.number not in sampler.draws


def test_a_sampler_stuck_outside_the_band_falls_back_to_a_uniform_draw():
    class Smallest(optuna.samplers.RandomSampler):
        def sample_independent(self, study, trial, name, dist):  # always the smallest choice
            return dist.low if hasattr(dist, "low") else dist.choices[0]

    space = load_space("ghostnet")
    sampler = BandSampler(Smallest(), space, Limits(200_000_000), seed=3, max_proposals=5)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    trial = study.ask()
    f = analytic_counts(space.suggest(trial)).flops
    assert 170_000_000 <= f <= 200_000_000
    assert sampler.draws[0] == 6 and sampler.fallbacks == 1


def test_band_limits_refuse_a_bad_fraction_and_describe_themselves():
    from ghostsearch import ConfigError

    with pytest.raises(ConfigError, match="must be in \\[0, 1\\)"):
        Limits(200_000_000, band=1.2)
    assert Limits(200_000_000).describe_band() == "[170, 200] MFLOPs"
    assert Limits(200_000_000, band=0).describe_band() == "anything under the limits"
    assert Limits(200_000_000, band=0).flops_range() == (None, 200_000_000)
