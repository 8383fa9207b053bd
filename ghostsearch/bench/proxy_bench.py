"""Where a proxy trial's time goes, against a naive DataLoader loop on the same model, and how
many trials an hour a device gets through with K workers.

The phases of one trial, each ended by a device sync so that asynchronous CUDA work is charged
to the phase that queued it: data ready (splits moved to the device, loaders built), model
build (construction, transfer, optimizer), the first epoch (per-shape warm-up included), the
steady epochs, and the per-epoch evaluation. The fast loop is the search's own trainer, with the
same seed-for-seed weights and batches as `train_proxy` (tested), so what is timed is what a
search runs.
"""

from __future__ import annotations

import dataclasses
import itertools
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from ghostsearch import NetConfig, analytic_counts
from ghostsearch.train.data import Dataset, Split
from ghostsearch.train.loop import (
    build_proxy_model,
    eval_loader,
    evaluate,
    graph_model,
    make_optimizer,
    proxy_loaders,
    train_epoch,
    train_step,
)
from ghostsearch.train.recipe import Recipe


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_memory_mb(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


@dataclasses.dataclass(frozen=True)
class Variant:
    """A change to the fast loop, to find what its warm-up and steady epochs are made of."""

    name: str = "default"
    amp: bool | None = None  # bf16 autocast; None: on for CUDA, off for CPU (as the search)
    cudnn: bool = True
    channels_last: bool = True
    cuda_graphs: bool = False  # training forward and backward replayed as CUDA graphs
    compile: bool = False  # torch.compile; its compile time lands in the first epoch


VARIANTS = {v.name: v for v in (Variant(), Variant("fp32", amp=False),
                                Variant("no-cudnn", cudnn=False),
                                Variant("no-channels-last", channels_last=False),
                                Variant("cuda-graphs", cuda_graphs=True),
                                Variant("compile", compile=True),
                                Variant("compile-no-channels-last", channels_last=False,
                                        compile=True))}


def timed_proxy(cfg: NetConfig, data: Dataset, protocol: Recipe, *, seed: int,
                device: torch.device | str, variant: Variant = Variant()) -> dict[str, Any]:
    """Train like `train_proxy`, timing each phase (seconds); returns the times and accuracy."""
    dev = torch.device(device)
    amp = dev.type == "cuda" if variant.amp is None else variant.amp
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    # cudnn.flags() also resets benchmark/deterministic/tf32: only enter it to turn cuDNN off
    off = torch.backends.cudnn.flags(enabled=False) if not variant.cudnn else nullcontext()
    with off:
        sync(dev)
        t0 = time.perf_counter()
        model = build_proxy_model(cfg, seed, dev, variant.channels_last)
        opt = make_optimizer(model, protocol)
        if variant.compile:  # lazy: the compilation runs in the first training steps
            model = torch.compile(model)
        sync(dev)
        t1 = time.perf_counter()
        train_loader, val_loader = proxy_loaders(data, protocol, seed, dev)
        sync(dev)
        t2 = time.perf_counter()
        capture_s = 0.0
        if variant.cuda_graphs:  # capture (with its warm-up passes) counts as model build
            model = graph_model(model, train_loader, amp)
            sync(dev)
            capture_s = time.perf_counter() - t2
        if not variant.channels_last:
            train_loader = _Batches(train_loader, torch.Tensor.contiguous, dev,
                                    train_loader.batch_size)
        total = protocol.epochs * len(train_loader)
        epochs, evals, curve = [], [], []
        for epoch in range(protocol.epochs):
            start = time.perf_counter()
            train_epoch(model, train_loader, opt, protocol, epoch, total, amp)
            sync(dev)
            mid = time.perf_counter()
            curve.append(evaluate(model, val_loader, amp))
            evals.append(time.perf_counter() - mid)
            epochs.append(mid - start)
    steady = statistics.median(epochs[1:]) if len(epochs) > 1 else None
    images = len(train_loader) * train_loader.batch_size
    return {
        "build_s": t1 - t0 + capture_s, "data_s": t2 - t1, "first_epoch_s": epochs[0],
        "steady_epoch_s": steady,
        "warmup_s": None if steady is None else max(0.0, epochs[0] - steady),
        "eval_s": statistics.median(evals),
        "trial_s": t2 - t0 + capture_s + sum(epochs) + sum(evals),
        "images_per_s": None if steady is None else images / steady,
        "peak_mem_mb": _peak_memory_mb(dev), "val_acc": curve[-1], "val_curve": curve,
        "epoch_s": epochs, "train_images": images,
    }


class _Batches:
    """Another loader's batches with `fn` applied to images and labels (a copy to the device, a
    memory format), iterated like `DeviceLoader` so that the same trainer runs them."""

    def __init__(self, loader: Any, fn: Callable[[torch.Tensor], torch.Tensor],
                 device: torch.device, batch_size: int) -> None:
        self.loader, self.fn, self.device, self.batch_size = loader, fn, device, batch_size

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for x, y in self.loader:
            yield self.fn(x), self.fn(y)


class PILImages(torch.utils.data.Dataset):
    """Images as PIL, one at a time, as a torchvision training script reads them: decoded from
    their files at every step, or (without files) converted from the uint8 split."""

    def __init__(self, split: Split, files: list[tuple[Path, int]] | None,
                 transform: Callable) -> None:
        if files is not None and len(files) != len(split):
            raise ValueError(f"{len(files)} files for a split of {len(split)} images")
        self.split, self.files, self.transform = split, files, transform
        self.size = int(split.images.shape[-1])

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        if self.files is None:
            image = Image.fromarray(self.split.images[i].permute(1, 2, 0).numpy())
            return self.transform(image), int(self.split.labels[i])
        path, label = self.files[i]
        with Image.open(path) as im:
            image = im.convert("RGB")
        if image.size != (self.size, self.size):
            image = image.resize((self.size, self.size), Image.BILINEAR)
        return self.transform(image), label


def naive_loader(data: Dataset, batch_size: int, *, files: list[tuple[Path, int]] | None,
                 workers: int, seed: int, device: torch.device) -> _Batches:
    """A DataLoader with worker processes and PIL transforms (random crop with 4 px padding,
    flip, ToTensor, Normalize), fp32 batches copied to the device: the usual training loop that
    the fast one is compared with."""
    from torchvision import transforms

    res = data.resolution
    transform = transforms.Compose([
        transforms.RandomCrop(res, padding=4), transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize([m / 255 for m in data.mean], [s / 255 for s in data.std])])
    batch_size = min(batch_size, len(data.train))
    loader = DataLoader(
        PILImages(data.train, files, transform), batch_size=batch_size, shuffle=True,
        drop_last=True, num_workers=workers, pin_memory=device.type == "cuda",
        persistent_workers=workers > 0, generator=torch.Generator().manual_seed(seed))
    return _Batches(loader, lambda t: t.to(device, non_blocking=True), device, batch_size)


def naive_proxy(cfg: NetConfig, data: Dataset, protocol: Recipe, *, seed: int,
                device: torch.device | str, files: list[tuple[Path, int]] | None = None,
                workers: int = 8, batch_size: int = 128) -> dict[str, Any]:
    """The same model and epochs trained through `naive_loader` in fp32 at `batch_size` (the
    learning rate scaled with it, as the protocol does); per-epoch times and accuracy."""
    dev = torch.device(device)
    protocol = dataclasses.replace(protocol, batch_size=batch_size)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    model = build_proxy_model(cfg, seed, dev, channels_last=False)
    opt = make_optimizer(model, protocol)
    loader = naive_loader(data, batch_size, files=files, workers=workers, seed=seed, device=dev)
    val_loader = eval_loader(data, data.val, dev)
    total = protocol.epochs * len(loader)
    epochs = []
    for epoch in range(protocol.epochs):
        start = time.perf_counter()
        train_epoch(model, loader, opt, protocol, epoch, total, amp=False)
        sync(dev)
        epochs.append(time.perf_counter() - start)
    steady = statistics.median(epochs[1:]) if len(epochs) > 1 else None
    images = len(loader) * loader.batch_size
    return {"first_epoch_s": epochs[0], "steady_epoch_s": steady, "epoch_s": epochs,
            "images_per_s": None if steady is None else images / steady,
            "val_acc": evaluate(model, val_loader, amp=False), "batch_size": batch_size,
            "workers": workers, "reads_files": files is not None,
            "peak_mem_mb": _peak_memory_mb(dev), "train_images": images}


def trials_per_hour(settings: Any, jobs: int, *, devices: list[str] | None = None,
                    trials_per_job: int = 4) -> dict[str, Any]:
    """Run a throw-away search of `jobs` x `trials_per_job` trained trials with `jobs` workers
    (processes sharing one journal-file study). Trials per hour are counted over the span from
    the first trial's start to the last one's end (a search pays process start and data loading
    once, not per trial), and over the whole wall time. `settings` is a `SearchSettings` whose
    storage, trials and n_jobs are replaced."""
    from ghostsearch.search.study import trained_count
    from ghostsearch.search.workers import run_trials

    with tempfile.TemporaryDirectory(prefix="ghostsearch-bench-") as tmp:
        run = dataclasses.replace(settings, study_name=f"bench-k{jobs}",
                                  storage=f"journal:{Path(tmp) / 'study.log'}",
                                  trials=jobs * trials_per_job, n_jobs=jobs)
        start = time.perf_counter()
        study = run_trials(run, devices=devices, show_progress=False)
        wall = time.perf_counter() - start
        trained = trained_count(study)
        done = [t for t in study.trials if t.datetime_complete is not None]
    span = (max(t.datetime_complete for t in done)
            - min(t.datetime_start for t in done)).total_seconds()
    return {"jobs": jobs, "trained": trained, "wall_s": wall, "span_s": span,
            "trials_per_hour": trained * 3600 / span,
            "trials_per_hour_wall": trained * 3600 / wall}


def bench_architectures(space: Any, budget_flops: int, searched: int,
                        seed: int) -> list[tuple[str, NetConfig]]:
    """The reference GhostNet 1.0x and `searched` random architectures of the space within the
    budget (what a search trains), with their names."""
    from .fidelity import sample_within_budget

    archs = [("ghostnet_1.0x", space.build_config(space.reference_params(1.0)))]
    if searched:
        for i, cfg in enumerate(sample_within_budget(space, budget_flops, searched, seed)):
            archs.append((f"searched_{i} ({analytic_counts(cfg).flops / 1e6:.0f}M)", cfg))
    return archs


def profile_steps(cfg: NetConfig, data: Dataset, protocol: Recipe, *, seed: int,
                  device: torch.device | str, out_dir: Path,
                  steady_after: int = 10) -> dict[str, float]:
    """Profile the first training step of a freshly built model (where a new architecture's
    warm-up is paid) and a steady step after `steady_after` more, with CUDA kernels on a GPU.
    Writes `first_step.txt` and `steady_step.txt` (ops by self time) and Chrome traces."""
    from torch.profiler import ProfilerActivity, profile

    dev = torch.device(device)
    amp = dev.type == "cuda"
    model = build_proxy_model(cfg, seed, dev)
    opt = make_optimizer(model, protocol)
    loader, _ = proxy_loaders(data, protocol, seed, dev)
    model.train()
    batches = itertools.chain.from_iterable(itertools.repeat(loader))  # epoch after epoch
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    key = "self_cuda_time_total" if dev.type == "cuda" else "self_cpu_time_total"
    out_dir.mkdir(parents=True, exist_ok=True)
    seconds = {}
    for name, skip in (("first_step", 0), ("steady_step", steady_after)):
        for _ in range(skip):
            train_step(model, *next(batches), opt, protocol.label_smoothing, amp)
        x, y = next(batches)
        sync(dev)
        start = time.perf_counter()
        with profile(activities=acts) as prof:
            train_step(model, x, y, opt, protocol.label_smoothing, amp)
            sync(dev)
        seconds[f"{name}_s"] = time.perf_counter() - start
        table = prof.key_averages().table(sort_by=key, row_limit=40)
        (out_dir / f"{name}.txt").write_text(table + "\n")
        prof.export_chrome_trace(str(out_dir / f"{name}.trace.json"))
    return seconds


def naive_comparison(rows: list[dict[str, Any]], jobs: list[dict[str, Any]], *,
                     batch: int, variant: str = "default") -> list[dict[str, Any]]:
    """The fast loop against the naive one, per architecture that ran both, like for like.

    Speed: the fast loop at `batch` (the protocol's) against the naive loop, per steady epoch
    and over all epochs. Accuracy: the fast loop at the naive loop's batch size when it ran
    (the same number of steps), else at `batch`. Trials per hour (with `jobs`, the output of
    `trials_per_hour`): the best K against one naive process whose trial is its epochs plus the
    fast trial's build, data and evaluation time (both evaluate with the same code)."""
    out = []
    for naive in (r for r in rows if r["loop"] == "naive"):
        same = [r for r in rows if r["arch"] == naive["arch"] and r["loop"] == variant]
        fast = next(r for r in same if r["batch"] == batch)
        peer = next((r for r in same if r["batch"] == naive["batch"]), fast)
        row = {"arch": naive["arch"], "fast_batch": batch, "naive_batch": naive["batch"],
               "steady_epoch_x": naive["steady_epoch_s"] / fast["steady_epoch_s"],
               "all_epochs_x": sum(naive["epoch_s"]) / sum(fast["epoch_s"]),
               "acc_compared_at_batch": peer["batch"],
               "val_acc_fast_minus_naive": peer["val_acc"] - naive["val_acc"]}
        if jobs:
            naive_trial = sum(naive["epoch_s"]) + fast["trial_s"] - sum(fast["epoch_s"])
            best = max(jobs, key=lambda j: j["trials_per_hour"])
            row.update({"naive_trials_per_hour": 3600 / naive_trial,
                        "best_jobs": best["jobs"],
                        "best_trials_per_hour": best["trials_per_hour"],
                        "trials_per_hour_x": best["trials_per_hour"] * naive_trial / 3600})
        out.append(row)
    return out
