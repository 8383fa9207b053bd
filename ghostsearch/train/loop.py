"""The training loop every run shares: optimiser, schedule steps, an epoch, evaluation, loaders
on the device, seeded models, and `train_proxy` (a fixed-length run without checkpoints, with a
per-epoch callback for pruning and optional CUDA graphs). `full.train_full` runs the same
epochs with a checkpoint after each; the two give bit-identical results for one seed."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ..arch.config import NetConfig
from ..arch.model import build_model
from ..errors import ConfigError
from .data import Dataset, DeviceLoader, Split
from .recipe import Recipe


@dataclass
class ProxyResult:
    val_acc: float  # final validation accuracy, %
    test_acc: float | None  # %, reported only, never selected on
    val_curve: list[float] = field(default_factory=list)  # validation accuracy after each epoch
    train_seconds: float = 0.0  # training and per-epoch evaluation, not the test evaluation
    epochs_run: int = 0


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


def pick_device(name: str | None = None) -> torch.device:
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: CUDA is not available here; use --device cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device {name!r}: not a torch device (cpu, cuda, cuda:1)") from None


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for p in model.parameters():
        (decay if p.ndim > 1 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: torch.nn.Module, protocol: Recipe) -> torch.optim.Optimizer:
    groups = _param_groups(model, protocol.weight_decay)
    if protocol.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=protocol.lr, betas=(protocol.momentum, 0.999))
    return torch.optim.SGD(groups, lr=protocol.lr, momentum=protocol.momentum, nesterov=True)


def make_ema(model: torch.nn.Module, protocol: Recipe) -> AveragedModel | None:
    """The exponential moving average of the weights and BatchNorm buffers that a recipe with
    `ema` evaluates instead of the weights (None without it)."""
    if not protocol.ema:
        return None
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(protocol.ema),
                         use_buffers=True)


def _beta(alpha: float, generator: torch.Generator, device: torch.device) -> float:
    """One draw of Beta(alpha, alpha) from the loader's generator (a ratio of two gammas), so
    that a seed fixes the mixing as it fixes the crops."""
    g = torch._standard_gamma(torch.full((2,), float(alpha), device=device),
                              generator=generator)
    return float(g[0] / g.sum().clamp_min(1e-12))


def mix_batch(x: torch.Tensor, y: torch.Tensor, protocol: Recipe,
              generator: torch.Generator | None
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """Mixup or cutmix of a batch with a shuffled copy of itself, as the recipe asks (with
    both, each batch picks one at even odds). Returns the images, both label vectors and the
    weight of the first; images come back unchanged with weight 1 when the recipe mixes
    nothing."""
    kinds = [k for k in ("mixup", "cutmix") if getattr(protocol, k) > 0]
    if not kinds:
        return x, y, y, 1.0
    dev = x.device
    kind = kinds[0] if len(kinds) == 1 else kinds[int(torch.randint(
        0, 2, (1,), device=dev, generator=generator))]
    lam = _beta(getattr(protocol, kind), generator, dev)
    perm = torch.randperm(x.shape[0], device=dev, generator=generator)
    if kind == "mixup":
        return lam * x + (1 - lam) * x[perm], y, y[perm], lam
    h, w = x.shape[-2:]
    ch, cw = int(h * math.sqrt(1 - lam)), int(w * math.sqrt(1 - lam))
    cy = int(torch.randint(0, h, (1,), device=dev, generator=generator))
    cx = int(torch.randint(0, w, (1,), device=dev, generator=generator))
    y0, y1 = max(cy - ch // 2, 0), min(cy + ch - ch // 2, h)
    x0, x1 = max(cx - cw // 2, 0), min(cx + cw - cw // 2, w)
    x = x.clone()
    x[..., y0:y1, x0:x1] = x[perm][..., y0:y1, x0:x1]
    lam = 1 - (y1 - y0) * (x1 - x0) / (h * w)  # the area actually pasted
    return x, y, y[perm], lam


def graph_model(model: torch.nn.Module, loader: DeviceLoader, amp: bool) -> torch.nn.Module:
    """The model with its training forward and backward captured as CUDA graphs and replayed.

    A proxy step on a small network is bound by kernel launches, not by the GPU: one replay
    launches the whole forward (or backward) at once. Every training batch has the loader's
    fixed shape (the ragged last batch is dropped); eval mode runs the eager forward. The
    capture's warm-up passes update BatchNorm's running statistics, so results differ slightly
    from the eager loop's."""
    if loader.device.type != "cuda":
        raise ConfigError(f"CUDA graphs need a CUDA device, not {loader.device}")
    # a batch-shaped sample (values are irrelevant); drawing a batch would move the loader's RNG
    shape = (loader.batch_size, *loader.split.images.shape[1:])
    sample = torch.randn(shape, device=loader.device).contiguous(
        memory_format=torch.channels_last)
    model.train()
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp, cache_enabled=False):
        return torch.cuda.make_graphed_callables(model, (sample,))


def train_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
               opt: torch.optim.Optimizer, label_smoothing: float, amp: bool,
               y2: torch.Tensor | None = None, lam: float = 1.0) -> torch.Tensor:
    """One step on a batch; returns the detached loss (no host sync). With `y2`, the loss is
    `lam` of the loss on `y` and the rest on `y2` (a mixed batch)."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
        logits = model(x)
        loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
        if y2 is not None and lam < 1.0:
            loss = lam * loss + (1 - lam) * F.cross_entropy(logits, y2,
                                                            label_smoothing=label_smoothing)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach()


def train_epoch(model: torch.nn.Module, loader: DeviceLoader, opt: torch.optim.Optimizer,
                protocol: Recipe, epoch: int, total_steps: int, amp: bool,
                ema: AveragedModel | None = None,
                on_step: Callable[[int], None] | None = None) -> float:
    """One pass over `loader` with the protocol's schedule; returns the mean loss. `ema` is
    updated after every step; `on_step(step)` is called after every step (a heartbeat).

    Raises TrainingDiverged when the loss is NaN or infinite (checked once per epoch: a host
    sync per step would cost more than the check is worth)."""
    model.train()
    device = loader.device
    loss_sum = torch.zeros((), device=device)
    step = epoch * len(loader)
    generator = getattr(loader, "generator", None)  # mixing draws from the loader's RNG
    for x, y in loader:
        for group in opt.param_groups:
            group["lr"] = protocol.lr_at(step, total_steps)
        x, y, y2, lam = mix_batch(x, y, protocol, generator)
        loss_sum += train_step(model, x, y, opt, protocol.label_smoothing, amp, y2, lam)
        if ema is not None:
            ema.update_parameters(model)
        step += 1
        if on_step is not None:
            on_step(step)
    mean = loss_sum.item() / max(1, len(loader))
    if not math.isfinite(mean):
        raise TrainingDiverged(f"loss is {mean} in epoch {epoch + 1}")
    return mean


@torch.no_grad()
def evaluate(model: torch.nn.Module, loader: DeviceLoader, amp: bool,
             flip: bool = False) -> float:
    """Top-1 accuracy in %, one host sync at the end. `flip` averages the logits of each image
    and its mirror image (test-time augmentation, two forwards: about a point more accuracy on
    CIFAR-10 here, but no less run-to-run noise, so protocols evaluate plainly)."""
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=loader.device)
    for x, y in loader:
        with torch.autocast(loader.device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(x)
            if flip:
                logits = logits + model(x.flip(-1))
            correct += (logits.argmax(1) == y).sum()
    return 100.0 * correct.item() / len(loader.split)


def build_proxy_model(cfg: NetConfig, seed: int, device: torch.device,
                      channels_last: bool = True) -> torch.nn.Module:
    """The model to train, initialised from `seed` (the same weights for the same seed)."""
    torch.manual_seed(seed)
    model = build_model(cfg).to(device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def eval_loader(data: Dataset, split: Split, device: torch.device) -> DeviceLoader:
    """Un-augmented batches of 1024 from `split`, normalised with the training statistics."""
    return DeviceLoader(split, 1024, data.mean, data.std, train=False, device=device)


def proxy_loaders(data: Dataset, protocol: Recipe, seed: int,
                  device: torch.device) -> tuple[DeviceLoader, DeviceLoader]:
    """Training and validation loaders with the splits moved to `device`."""
    train = DeviceLoader(data.train, protocol.batch_size, data.mean, data.std, train=True,
                         seed=seed, device=device, pad=protocol.crop_pad, flip=protocol.flip,
                         cutout=protocol.cutout)
    return train, eval_loader(data, data.val, device)


def train_proxy(
    cfg: NetConfig,
    data: Dataset,
    protocol: Recipe,
    *,
    seed: int,
    device: torch.device | str = "cpu",
    on_epoch: Callable[[int, float], None] | None = None,
    evaluate_test: bool = True,
    cuda_graphs: bool = False,
) -> ProxyResult:
    """Train `cfg` (a proxy config, see `proxy_config`) for the protocol; return accuracies.

    `on_epoch(epoch, val_acc)` is called after each epoch; it may raise (e.g. optuna's
    TrialPruned) to stop the training. Raises TrainingDiverged on a NaN/inf loss.
    `cuda_graphs` replays the training forward and backward as CUDA graphs (see graph_model).
    """
    device = torch.device(device)
    amp = protocol.amp(device.type)  # auto: bf16 on CUDA; CPU fp32 (bf16 measured slower)
    model = build_proxy_model(cfg, seed, device)
    train_loader, val_loader = proxy_loaders(data, protocol, seed, device)
    if cuda_graphs:
        model = graph_model(model, train_loader, amp)
    opt = make_optimizer(model, protocol)
    ema = make_ema(model, protocol)
    total = protocol.epochs * len(train_loader)
    result = ProxyResult(val_acc=0.0, test_acc=None)
    start = time.perf_counter()
    for epoch in range(protocol.epochs):
        train_epoch(model, train_loader, opt, protocol, epoch, total, amp, ema)
        acc = evaluate(ema if ema is not None else model, val_loader, amp)
        result.val_curve.append(acc)
        result.val_acc = acc
        result.epochs_run = epoch + 1
        result.train_seconds = time.perf_counter() - start
        if on_epoch is not None:
            on_epoch(epoch, acc)
    if evaluate_test:
        final = ema if ema is not None else model
        result.test_acc = evaluate(final, eval_loader(data, data.test, device), amp)
    return result
