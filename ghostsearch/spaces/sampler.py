"""Samplers of a search: Optuna's, restricted to the band under the limit.

`BandSampler` wraps any Optuna sampler. It asks the wrapped sampler for whole points and keeps
the first whose config, counted analytically (milliseconds, nothing built), lies in the band:
rejection on the sampler's own proposal distribution, so what TPE or NSGA-II learned still
shapes the draws and nothing outside the band is trained. When the wrapped sampler keeps
proposing outside the band it falls back to a uniform draw from the band. Enqueued trials
(references, prescreen picks) keep their fixed points.
"""

from __future__ import annotations

import random
import warnings
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.study import Study
from optuna.trial import FrozenTrial

from .limits import Limits
from .space import SearchSpace, sample_band

# Optuna's GPSampler is left out: each proposal optimises its acquisition function (seconds on
# a CPU for 37 parameters) and returns the same optimum when asked again, so rejection into
# the band cost 161 s for 4 proposals in tests/test_sampler.py on 2 busy cores.
SAMPLERS = ("tpe", "nsga2", "random")
# proposals asked of the wrapped sampler before a uniform draw from the band
MAX_PROPOSALS = 64
# trials (references included) before TPE models anything: the first ones are random draws
TPE_STARTUP = 10


def base_sampler(name: str, seed: int, multi_objective: bool = False,
                 n_startup_trials: int = TPE_STARTUP) -> BaseSampler:
    """Optuna's sampler by name. TPE is multivariate and grouped (it models the choices
    jointly instead of one at a time) and runs with Optuna's constant liar, its documented
    mechanism for concurrent trials: a running trial counts as a poor result, so parallel
    workers are steered away from what the others are training."""
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=20)
    with warnings.catch_warnings():  # multivariate and group are marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup_trials,
                                          constant_liar=True, multivariate=True, group=True)


class BandSampler(BaseSampler):
    """`base` restricted to the candidates of `space` that lie in the band of `limits`.

    `draws` maps each sampled trial number to the proposals it took (for run.json); a proposal
    answered by the uniform fallback counts as `MAX_PROPOSALS + 1`.
    """

    def __init__(self, base: BaseSampler, space: SearchSpace, limits: Limits, seed: int = 0,
                 max_proposals: int = MAX_PROPOSALS) -> None:
        self.base = base
        self.space = space
        self.limits = limits
        self.max_proposals = max_proposals
        self._rng = random.Random(seed)
        self._dists = space.distributions()
        self.draws: dict[int, int] = {}
        self.fallbacks = 0

    def infer_relative_search_space(self, study: Study,
                                    trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return dict(self._dists)  # the space is fixed: every point is drawn as a whole

    def sample_relative(self, study: Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        if not search_space or trial.system_attrs.get("fixed_params"):
            return {}  # an enqueued point (a reference, a prescreen pick) stays as it is
        for n in range(1, self.max_proposals + 1):
            params = self._propose(study, trial)
            if self.limits.in_band(self.space.build_config(params)):
                self.draws[trial.number] = n
                return params
        self.fallbacks += 1
        self.draws[trial.number] = self.max_proposals + 1
        low, high = self.limits.flops_range()
        [point] = sample_band(self.space, 1, self._rng.randrange(2**31), low_flops=low,
                              high_flops=high, accept=self.limits.in_band,
                              exclude=()).points
        return point

    def _propose(self, study: Study, trial: FrozenTrial) -> dict[str, Any]:
        """One whole point from the wrapped sampler: its joint proposal where it makes one,
        each remaining parameter from its independent proposal."""
        rel_space = self.base.infer_relative_search_space(study, trial)
        params = self.base.sample_relative(study, trial, rel_space) if rel_space else {}
        for name, dist in self._dists.items():
            if name not in params:
                params[name] = self.base.sample_independent(study, trial, name, dist)
        return params

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self.base.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self.base.before_trial(study, trial)

    def after_trial(self, study: Study, trial: FrozenTrial, state: Any,
                    values: Any) -> None:
        self.base.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.base.reseed_rng()
        self._rng = random.Random(self._rng.randrange(2**31))
