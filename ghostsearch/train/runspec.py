"""What determines a training run, as one frozen record: the model exactly as trained (its
proxy form), the recipe's identity (augmentation and precision included), the content of the
data (every image and label of every split), the device class, the seed, and a hash of the
code that builds and trains the model. Its hash without the seed keys the reference bank;
with the seed it names one run. Two runs with one key were made the same way, by the same
code, so a stored one may stand in for a new one."""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError

FORMAT = "ghostsearch.runspec/1"
# the subpackages whose source determines what a run computes: the model family and training
CODE_PACKAGES = ("arch", "train")


@functools.lru_cache(maxsize=1)
def code_hash() -> str:
    """The hash of every module of `CODE_PACKAGES` (paths and bytes): a change to how a model
    is built or trained makes new runs another key; a change anywhere else does not."""
    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for pkg in CODE_PACKAGES:
        for f in sorted((root / pkg).glob("*.py")):
            h.update(f.relative_to(root).as_posix().encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def device_class(device: Any) -> str:
    """cpu, cuda, mps...: what kind of device ran it (not which one)."""
    return str(device).split(":", 1)[0]


@dataclass(frozen=True)
class RunSpec:
    model: dict[str, Any]  # a ModelSpec as a dict: the proxy config and the classes
    recipe: dict[str, Any]  # Recipe.identity()
    data: str  # content fingerprint of the data (train, held-out and test splits)
    device: str  # device class
    seed: int | None = None
    code: str = field(default_factory=code_hash)

    def __post_init__(self) -> None:
        if self.device != device_class(self.device):
            object.__setattr__(self, "device", device_class(self.device))

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunSpec:
        if d.get("format") != FORMAT:
            raise ConfigError(f"run spec of format {d.get('format')!r}: this version reads "
                              f"{FORMAT!r}")
        return cls(**{k: v for k, v in d.items() if k != "format"})

    def key(self) -> str:
        """The run's key without its seed: the reference bank's key."""
        body = {k: v for k, v in self.to_dict().items() if k != "seed"}
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]

    def run_id(self) -> str:
        """One run: the key and the seed."""
        return f"{self.key()}-s{self.seed}"


def unit_folder(root: str | Path, label: str, run: RunSpec) -> Path:
    """The one checkpoint convention of every unit (confirm, the ground truth): a folder
    under `root` named by a readable label, the seed and the run's key, so a checkpoint is
    only ever resumed by the run that wrote it (same model, recipe, data, device class and
    code); a change to any of them starts a new folder instead of mixing two runs."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in label)
    return Path(root) / f"{safe}-seed{run.seed}-{run.key()[:12]}"
