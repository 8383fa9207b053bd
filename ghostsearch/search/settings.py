"""What a search is: the space, the data, the proxy protocol, the limits and the workers,
checked when made so that a bad option is refused before any data loads."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..arch.counting import analytic_counts
from ..errors import ConfigError
from ..latency.table import LatencyTable
from ..spaces.limits import DEFAULT_BAND, Limits
from ..spaces.sampler import SAMPLERS
from ..spaces.space import SearchSpace, sample_band
from ..supernet.train import read_tag
from ..train.data import DEFAULT_DATA_DIR, DEFAULT_MAX_DATA_GB, Dataset, load_data
from ..train.loop import pick_device
from ..train.recipe import Recipe
from .prescreen import pool_points
from .scores import SCORE_NAMES
from .storage import check_storage_url

OBJECTIVES = ("accuracy", "flops", "params", "latency")
PRUNERS = ("median", "hyperband", "sha", "none")


@dataclass(frozen=True)
class DataSpec:
    """How each worker loads the data (workers are separate processes)."""

    name: str = "cifar10"
    data_dir: str | None = DEFAULT_DATA_DIR
    val_size: int | None = None
    train_subset: int | None = None
    resolution: int | None = None
    split_seed: int = 0  # picks the held-out validation images; apart from the search seed
    max_data_gb: float = DEFAULT_MAX_DATA_GB
    train_cap: int | None = None  # a preset's subset: at most this many training images
    val_cap: int | None = None

    def load(self, progress: bool = True) -> Dataset:
        return load_data(self.name, self.data_dir, val_size=self.val_size,
                         train_subset=self.train_subset, resolution=self.resolution,
                         seed=self.split_seed, progress=progress, max_data_gb=self.max_data_gb,
                         train_cap=self.train_cap, val_cap=self.val_cap)

    def identity(self) -> dict[str, Any]:
        """What fixes the images a study trains and selects on (not where they lie)."""
        return {k: v for k, v in dataclasses.asdict(self).items()
                if k not in ("data_dir", "max_data_gb")}


@dataclass(frozen=True)
class SearchSettings:
    study_name: str
    storage: str
    space: SearchSpace
    data: DataSpec
    protocol: Recipe
    budget_flops: int | None = None
    objectives: tuple[str, ...] = ("accuracy",)
    sampler: str = "tpe"
    trials: int = 40  # trained trials (baselines included); over-budget ones are not counted
    timeout: float | None = None  # seconds
    seed: int = 0
    device: str = "auto"
    n_jobs: int = 1
    pruner: str = "median"  # on per-epoch validation accuracy; single-objective only
    baselines: bool = True
    heartbeat_s: int = 30  # a killed worker's trial is failed after 3 missed beats
    latency_ms: float | None = None  # hard limit on the predicted deployment latency
    latency_table: str | None = None  # a LatencyTable file (ghostsearch table)
    cuda_graphs: bool = False  # replay each proxy training step as CUDA graphs
    prescreen: str | None = None  # a training-free score that ranks a pool before training
    pool: int = 0  # candidates within the limits that the prescreen scores
    top: int = 0  # of them, the best this many are trained with the proxy
    band: float = DEFAULT_BAND  # candidates lie in [band x limit, limit]; 0: anywhere under it
    supernet: str | None = None  # a supernet checkpoint: `prescreen="supernet"` ranks with it
    out: str | None = None  # where the report goes (default: results/<study_name>)
    preset: str = ""  # the preset the protocol and mode came from (a label, not identity)

    def __post_init__(self) -> None:
        if self.budget_flops is not None:  # refused before any data is loaded
            low = smallest_flops(self.space)
            if self.budget_flops < low:
                raise ConfigError(
                    f"--budget {self.budget_flops / 1e6:.2f}M is below the smallest architecture "
                    f"of space {self.space.name!r} ({low / 1e6:.2f} MFLOPs at "
                    f"{self.space.deployment.resolution}px); raise it or use a smaller space")
        if self.trials < 1:
            raise ConfigError(f"--trials {self.trials}: must be >= 1")
        if self.heartbeat_s < 1:
            raise ConfigError(f"heartbeat_s={self.heartbeat_s}: must be >= 1 second")
        if self.n_jobs < 1:
            raise ConfigError(f"--n-jobs {self.n_jobs}: must be >= 1")
        if self.timeout is not None and self.timeout <= 0:
            raise ConfigError(f"--timeout {self.timeout}: must be a positive number of seconds")
        if not self.objectives or self.objectives[0] != "accuracy" or any(
                o not in OBJECTIVES for o in self.objectives) or len(set(self.objectives)) != len(
                self.objectives):
            raise ConfigError(f"--objectives {','.join(self.objectives)}: start with accuracy, "
                              f"then any of {', '.join(OBJECTIVES[1:])} (e.g. accuracy,flops)")
        needs_table = self.latency_ms is not None or "latency" in self.objectives
        if needs_table and self.latency_table is None:
            raise ConfigError("--latency-ms and the latency objective need --latency-table FILE "
                              "(make one with ghostsearch table)")
        if self.latency_ms is not None and not self.latency_ms > 0:
            raise ConfigError(f"--latency-ms {self.latency_ms}: must be a positive number")
        if self.latency_table is not None:

            table = LatencyTable.load(self.latency_table)  # refuses an unreadable file
            if table.resolution != self.space.deployment.resolution:
                raise ConfigError(
                    f"--latency-table {self.latency_table}: built at {table.resolution}px, "
                    f"the space deploys at {self.space.deployment.resolution}px")
        if self.cuda_graphs and pick_device(self.device).type != "cuda":
            raise ConfigError("--cuda-graphs needs a CUDA device (--device cuda)")
        Limits(self.budget_flops, band=self.band)  # refuses a band outside [0, 1)
        if (self.budget_flops and self.band > 0 and self.latency_ms is None
                and self.prescreen is None):  # a prescreen's pool says so itself
            band_has_architectures(self.space, self.budget_flops, self.band)
        if self.pruner not in PRUNERS:
            raise ConfigError(f"--pruner {self.pruner!r}: choose one of {', '.join(PRUNERS)}")
        if (self.prescreen == "supernet") != (self.supernet is not None):
            raise ConfigError("--prescreen supernet and --supernet DIR go together (a "
                              "checkpoint of ghostsearch supernet train)")
        if self.supernet is not None:
            tag = supernet_tag(self.supernet)
            if tag["space_sha256"] != self.space.fingerprint():
                raise ConfigError(f"--supernet {self.supernet}: trained for space "
                                  f"{tag['space']!r}, not this search's {self.space.name!r}")
        if self.prescreen is not None:

            if self.prescreen not in (*SCORE_NAMES, "supernet"):
                raise ConfigError(f"--prescreen {self.prescreen!r}: unknown score (known: "
                                  f"{', '.join(SCORE_NAMES)}, supernet)")
            if self.pool < 1 or self.top < 1:
                raise ConfigError(f"--pool {self.pool} --top {self.top}: both must be >= 1 "
                                  "with --prescreen")
            if self.top > self.pool:
                raise ConfigError(f"--top {self.top} is above --pool {self.pool}: the best "
                                  "are picked from the pool; raise --pool or lower --top")

            pool_points(self)  # a pool the limits cannot fill is refused before any data loads
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"--sampler {self.sampler!r}: choose one of {', '.join(SAMPLERS)}")
        check_storage_url(self.storage)

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    def identity(self) -> dict[str, Any]:
        """What must not change when a study is resumed (a change makes it another study)."""
        return {
            "space": self.space.name,
            "space_sha256": self.space.fingerprint(),
            "budget_flops": self.budget_flops,
            "latency_ms": self.latency_ms,
            "latency_table": (None if self.latency_table is None else hashlib.sha256(
                Path(self.latency_table).read_bytes()).hexdigest()[:16]),
            "objectives": list(self.objectives),
            "data": self.data.identity(),
            "protocol": dataclasses.asdict(self.protocol),
            "prescreen": ({"score": self.prescreen, "pool": self.pool, "top": self.top,
                           **({"supernet": supernet_tag(self.supernet)["tag"]}
                              if self.supernet else {})}
                          if self.prescreen else None),
            "seed": self.seed,
            "band": self.band,
            # ordered distributions for ordinal choices (before: every choice categorical)
            "encoding": "ordered",
        }


@functools.lru_cache(maxsize=8)
def supernet_tag(path: str) -> dict[str, Any]:
    """What identifies a supernet checkpoint: its space, plan and epoch (read once a path)."""

    return read_tag(path)


# uniform draws that find an architecture in any band that holds a few percent of the space
BAND_CHECK_DRAWS = 20_000


@functools.lru_cache(maxsize=64)
def band_has_architectures(space: SearchSpace, budget_flops: int, band: float) -> None:
    """Refuse, before anything loads, a band [band x budget, budget] that no architecture of
    the space falls in (its choices are discrete): every trial would fail looking for one."""
    low = int(band * budget_flops)
    if smallest_flops(space) >= low:  # the smallest architecture lies in it (and is rare)
        return
    try:
        sample_band(space, 1, 0, low_flops=low, high_flops=budget_flops,
                    max_tries=BAND_CHECK_DRAWS)
    except ConfigError:
        raise ConfigError(
            f"--budget {budget_flops / 1e6:g}M: no architecture of space {space.name!r} lies "
            f"in [{low / 1e6:g}, {budget_flops / 1e6:g}] MFLOPs ({BAND_CHECK_DRAWS} draws); "
            f"lower --band (0 takes anything under the budget) or raise --budget") from None


def smallest_flops(space: SearchSpace) -> int:
    return analytic_counts(space.build_config(space.smallest_params())).flops
