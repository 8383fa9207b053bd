"""Training the supernet with the sandwich rule and in-place distillation, resumable.

Each step trains, on one batch, the largest sub-network on the labels, then the smallest and
`random_subnets` sub-networks drawn uniformly from the deployment-FLOPs band being searched,
each on the largest one's softened outputs (in-place distillation, as BigNAS and Once-for-All
do); the gradients add up on the shared weights and one SGD step follows. The schedule is a
`Recipe`'s (its epochs, batch, learning rate, warm-up and decay). The checkpoint after every
epoch carries the space, task and plan beside the weights, so a rerun resumes it and
`load_supernet` rebuilds the supernet from the file alone.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..progress import progress_bar
from ..provenance import write_atomic
from ..spaces.space import SearchSpace, sample_band, space_from_dict
from ..train.data import Dataset
from ..train.loop import make_optimizer, proxy_loaders
from ..train.recipe import Recipe
from .weights import SuperNet, Task

CHECKPOINT = "supernet.pt"


@dataclass(frozen=True)
class Plan:
    """What a supernet training is: the recipe, the band its random sub-networks come from
    (deployment MFLOPs; None: anywhere in the space), how many a step, and the seed."""

    recipe: Recipe
    band_mflops: tuple[float, float] | None = None
    random_subnets: int = 2
    distill: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.random_subnets < 0:
            raise ConfigError(f"--random-subnets {self.random_subnets}: must be >= 0")
        if self.band_mflops is not None and not 0 <= self.band_mflops[0] < self.band_mflops[1]:
            raise ConfigError(f"--band {self.band_mflops}: must be LO:HI with 0 <= LO < HI")

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "recipe": dataclasses.asdict(self.recipe),
                "band_mflops": list(self.band_mflops) if self.band_mflops else None}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Plan:
        band = d.get("band_mflops")
        return cls(Recipe(**d["recipe"]), tuple(band) if band else None,
                   d["random_subnets"], d["distill"], d["seed"])


def band_draws(space: SearchSpace, plan: Plan, n: int, seed: int) -> list[dict[str, Any]]:
    """`n` points drawn uniformly from the plan's band (distinct within one call)."""
    if n == 0:
        return []
    low, high = ((int(plan.band_mflops[0] * 1e6), int(plan.band_mflops[1] * 1e6))
                 if plan.band_mflops else (None, None))
    return sample_band(space, n, seed, low_flops=low, high_flops=high).points


def save(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)  # a kill during the save never leaves a broken checkpoint


def _read(path: str | Path, mmap: bool = False) -> tuple[Path, dict[str, Any]]:
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT
    if not path.exists():
        raise ConfigError(f"{path}: no supernet checkpoint; train one with `ghostsearch "
                          "supernet train`")
    return path, torch.load(path, map_location="cpu", weights_only=False, mmap=mmap)


def load_supernet(path: str | Path, device: str | torch.device = "cpu") -> tuple[
        SuperNet, dict[str, Any]]:
    """The supernet of a checkpoint (a file or the folder holding `supernet.pt`), rebuilt from
    the file's own space and task, and the checkpoint's other entries."""
    path, state = _read(path)
    space = space_from_dict(state["space"], str(path))
    sn = SuperNet(space, Task(**state["task"]))
    sn.load_state_dict(state["supernet"])
    return sn.to(device), state


def read_tag(path: str | Path) -> dict[str, Any]:
    """A checkpoint's identity without building the supernet: its space (name and
    fingerprint), task, plan, epoch, and a short tag of plan and epoch."""
    import hashlib

    path, state = _read(path, mmap=True)  # the weights stay on disk
    space = space_from_dict(state["space"], str(path))
    plan = hashlib.sha256(json.dumps(state["plan"], sort_keys=True).encode()).hexdigest()[:8]
    return {"space": space.name, "space_sha256": space.fingerprint(), "task": state["task"],
            "plan": state["plan"], "epoch": state["epoch"], "tag": f"{plan}-e{state['epoch']}"}


def train_supernet(space: SearchSpace, data: Dataset, plan: Plan, out_dir: str | Path, *,
                   device: str | torch.device = "cpu", log: Callable[[str], None] = print,
                   show_progress: bool = True) -> dict[str, Any]:
    """Train (or resume) the supernet of `space` on `data` for `plan`, checkpointing to
    `out_dir/supernet.pt` after every epoch; returns the training record (also written as
    `out_dir/supernet.json`)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    ckpt = out / CHECKPOINT
    task = Task(data.num_classes, data.resolution, plan.recipe.small_input_stem_stride
                if data.resolution <= 64 else space.deployment.stem_stride)
    torch.manual_seed(plan.seed)
    sn = SuperNet(space, task)
    start_epoch, history, seconds = 0, [], 0.0
    state = None
    if ckpt.exists():
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        if (state["space"] != space.to_dict() or state["plan"] != plan.to_dict()
                or state["task"] != dataclasses.asdict(task)):
            raise ConfigError(f"{ckpt} was written for another space, plan or data; use a new "
                              "--out or the original options")
        sn.load_state_dict(state["supernet"])
        start_epoch, history, seconds = state["epoch"], state["history"], state["seconds"]
        log(f"resuming from {ckpt} after epoch {start_epoch}")
    sn = sn.to(device).train()
    train_loader, _ = proxy_loaders(data, plan.recipe, plan.seed, device)
    opt = make_optimizer(sn, plan.recipe)
    rng = random.Random(plan.seed)
    if state is not None:
        opt.load_state_dict(state["optimizer"])
        train_loader.generator.set_state(state["loader_rng"])
        torch.set_rng_state(state["torch_rng"])
        rng.setstate(state["py_rng"])
    smallest = space.smallest_params()
    total = plan.recipe.epochs * len(train_loader)
    bar = progress_bar(total=total, initial=start_epoch * len(train_loader), unit="step",
                       desc="supernet", disable=not show_progress)
    for epoch in range(start_epoch, plan.recipe.epochs):
        t0 = time.perf_counter()
        losses = torch.zeros(2)
        step = epoch * len(train_loader)
        for x, y in train_loader:
            for group in opt.param_groups:
                group["lr"] = plan.recipe.lr_at(step, total)
            opt.zero_grad(set_to_none=True)
            teacher = sn(x)  # the largest sub-network, on the labels
            loss = F.cross_entropy(teacher, y, label_smoothing=plan.recipe.label_smoothing)
            loss.backward()
            losses[0] += loss.detach()
            soft = F.softmax(teacher.detach(), dim=1)
            students = [smallest] + band_draws(space, plan, plan.random_subnets,
                                               rng.randrange(2**31))
            for params in students:
                logits = sn(x, params)
                if plan.distill:
                    student = F.kl_div(F.log_softmax(logits, dim=1), soft, reduction="batchmean")
                else:
                    student = F.cross_entropy(logits, y,
                                              label_smoothing=plan.recipe.label_smoothing)
                student.backward()
                losses[1] += student.detach() / len(students)
            opt.step()
            step += 1
            bar.update(1)
        seconds += time.perf_counter() - t0
        n = max(1, len(train_loader))
        history.append({"epoch": epoch + 1, "loss_largest": losses[0].item() / n,
                        "loss_students": losses[1].item() / n, "seconds": seconds})
        save(ckpt, {"supernet": sn.state_dict(), "optimizer": opt.state_dict(),
                    "epoch": epoch + 1, "history": history, "seconds": seconds,
                    "space": space.to_dict(), "task": dataclasses.asdict(task),
                    "plan": plan.to_dict(), "loader_rng": train_loader.generator.get_state(),
                    "torch_rng": torch.get_rng_state(), "py_rng": rng.getstate()})
        log(f"epoch {epoch + 1}/{plan.recipe.epochs}: largest {history[-1]['loss_largest']:.3f}"
            f", students {history[-1]['loss_students']:.3f}, {seconds / 60:.1f} min")
    bar.close()
    record = {"space": space.name, "task": dataclasses.asdict(task), "plan": plan.to_dict(),
              "history": history, "train_seconds": seconds,
              "threads": torch.get_num_threads(), "data": data.summary()}
    write_atomic(out / "supernet.json", json.dumps(record, indent=2) + "\n")
    return record
