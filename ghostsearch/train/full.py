"""Full training of a found architecture or a named network, with a checkpoint every epoch and
resume after interruption. A checkpoint carries the model spec and the recipe beside the
weights, so resuming rebuilds the model from the checkpoint itself."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..arch.config import NetConfig
from ..arch.model import build_model
from ..compress.zoo import make_model
from ..errors import ConfigError
from ..provenance import runtime_info, write_atomic
from .data import Dataset, content_fingerprint
from .loop import (
    eval_loader,
    evaluate,
    make_ema,
    make_optimizer,
    proxy_loaders,
    train_epoch,
)
from .recipe import Recipe
from .runspec import RunSpec, device_class


@dataclass(frozen=True)
class ModelSpec:
    """What to build: a NetConfig (from a search) or a named network from the zoo."""

    config: dict[str, Any] | None = None
    name: str | None = None
    num_classes: int = 10

    def build(self) -> nn.Module:
        if self.config is not None:
            return build_model(NetConfig.from_dict(self.config))
        if self.name is None:
            raise ConfigError("a model spec needs a config or a name")
        return make_model(self.name, self.num_classes)[0]

    def describe(self) -> str:
        return self.name or NetConfig.from_dict(self.config).short()


def load_init(model: nn.Module, path: str | Path) -> list[str]:
    """Load a timm-format state_dict (e.g. a GhostNet checkpoint) strictly. A checkpoint for
    another class count loads into the model with its classifier reset to that count (timm's
    `reset_classifier`), then the model gets a fresh classifier for its own classes; the
    classifier's keys are returned."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError) as e:
        raise ConfigError(f"--init {path}: cannot read ({e})") from None
    state = state.get("state_dict", state.get("model", state)) if isinstance(state, dict) else {}
    own = model.state_dict()
    theirs = state.get("classifier.weight")
    swap = (hasattr(model, "reset_classifier") and theirs is not None
            and own.get("classifier.weight") is not None
            and theirs.shape != own["classifier.weight"].shape)
    target = getattr(model, "num_classes", None)
    if swap:
        model.reset_classifier(int(theirs.shape[0]))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        if swap:
            model.reset_classifier(target)
        first = str(e).splitlines()[1].strip() if len(str(e).splitlines()) > 1 else str(e)
        raise ConfigError(f"--init {path}: does not fit this model ({first})") from None
    if swap:
        model.reset_classifier(target)
        return [k for k in own if k.startswith("classifier.")]
    return []


def _save(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)  # a kill during the save never leaves a broken checkpoint


def train_full(spec: ModelSpec, data: Dataset, recipe: Recipe, out_dir: str | Path, *,
               seed: int = 0, device: str | torch.device = "cpu", init: str | None = None,
               log: Any = print, on_step: Callable[[int], None] | None = None,
               ) -> dict[str, Any]:
    """Train to the end of `recipe`, checkpointing to `out_dir/last.pt` after every epoch.

    If `out_dir/last.pt` exists, training resumes from it (same spec and recipe required).
    `on_step(step)` is called after every optimiser step (a unit's heartbeat). Returns and
    writes `out_dir/record.json` (atomically): history, final validation/test accuracy, time,
    and what ran it (versions, commit, device, threads), with its RunSpec and key.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    amp = recipe.amp(device.type)
    if recipe.threads and device.type == "cpu":
        torch.set_num_threads(recipe.threads)
    wall0 = time.time()
    ckpt_path = out / "last.pt"
    torch.manual_seed(seed)
    model = spec.build()
    run = run_spec(spec, data, recipe, seed, device)
    start_epoch, history, seconds = 0, [], 0.0
    state = None
    if ckpt_path.exists():
        state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if state["spec"] != dataclasses.asdict(spec) or _identity(state["recipe"]) != \
                recipe.identity():
            raise ConfigError(f"{ckpt_path} was written for another model or recipe; use a new "
                              "--out or the original options")
        changed = _changed(state.get("run_spec"), run)
        if changed:
            raise ConfigError(f"{ckpt_path} was written by a run with another {changed}; use a "
                              "new --out or the original data, seed and device")
        model.load_state_dict(state["model"])
        start_epoch, history, seconds = state["epoch"], state["history"], state["seconds"]
        log(f"resuming from {ckpt_path} after epoch {start_epoch}")
    elif init is not None:
        skipped = load_init(model, init)
        log(f"initialised from {init}" + (f" (new {', '.join(skipped)})" if skipped else ""))
    model = model.to(device).to(memory_format=torch.channels_last)
    train_loader, val_loader = proxy_loaders(data, recipe, seed, device)
    opt = make_optimizer(model, recipe)
    ema = make_ema(model, recipe)
    if state is not None:
        opt.load_state_dict(state["optimizer"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        train_loader.generator.set_state(state["loader_rng"])
        torch.set_rng_state(state["torch_rng"])
    total = recipe.epochs * len(train_loader)
    for epoch in range(start_epoch, recipe.epochs):
        t0 = time.perf_counter()
        loss = train_epoch(model, train_loader, opt, recipe, epoch, total, amp, ema, on_step)
        val = evaluate(ema if ema is not None else model, val_loader, amp)
        seconds += time.perf_counter() - t0
        history.append({"epoch": epoch + 1, "loss": loss, "val_acc": val, "seconds": seconds})
        _save(ckpt_path, {"model": model.state_dict(), "optimizer": opt.state_dict(),
                          "ema": ema.state_dict() if ema is not None else None,
                          "epoch": epoch + 1, "history": history, "seconds": seconds,
                          "spec": dataclasses.asdict(spec), "recipe": recipe.to_dict(),
                          "loader_rng": train_loader.generator.get_state(),
                          "torch_rng": torch.get_rng_state(), "seed": seed,
                          "run_spec": run.to_dict()})
        log(f"epoch {epoch + 1}/{recipe.epochs}: loss {loss:.4f}, val {val:.2f}%, "
            f"{seconds:.1f} s")
    final = ema if ema is not None else model
    record = {
        "model": spec.describe(), "spec": dataclasses.asdict(spec),
        "recipe": recipe.to_dict(), "seed": seed, "device": str(device),
        "params": sum(p.numel() for p in model.parameters()),
        "history": history, "val_acc": history[-1]["val_acc"] if history else None,
        "test_acc": evaluate(final, eval_loader(data, data.test, device), amp),
        "train_seconds": seconds,
        "data": data.summary(),
        "preprocessing": data.preprocessing(),
        "ran_on": {**runtime_info(device), "wall_seconds_this_run": time.time() - wall0},
        "run_spec": run.to_dict(), "run_key": run.key(),
    }
    write_atomic(out / "record.json", json.dumps(record, indent=2) + "\n")
    return record


def run_spec(spec: ModelSpec, data: Dataset, recipe: Recipe, seed: int,
             device: str | torch.device) -> RunSpec:
    """What determines the run `train_full` makes of these arguments (its key names the
    unit's folder, `runspec.unit_folder`, and keys the reference bank)."""
    return RunSpec(model=dataclasses.asdict(spec), recipe=recipe.identity(),
                   data=content_fingerprint(data), device=device_class(device), seed=seed)


def _changed(stored: dict[str, Any] | None, run: RunSpec) -> str:
    """Which of data, seed and device class differ between a checkpoint's RunSpec and this
    run ("" when none, or when the checkpoint predates RunSpecs). The code may differ: a
    resumed unit records the code of its last part, and its key says which."""
    if stored is None:
        return ""
    names = {"data": "data content", "seed": "seed", "device": "device class"}
    return ", ".join(label for f, label in names.items() if stored.get(f) != getattr(run, f))


def _identity(stored: dict[str, Any]) -> dict[str, Any]:
    """The identity of a recipe stored in a checkpoint (as written by any version)."""
    return Recipe.from_dict({k: v for k, v in stored.items() if k != "format"}).identity()
