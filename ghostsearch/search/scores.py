"""Training-free scores: rank architectures at initialisation from one batch of proxy images.

Each follows its paper and the reference code of the zero-cost proxies (Abdelfattah et al.,
ICLR 2021), so that figures compare with the literature. Higher always means predicted better.

- synflow (Tanaka et al., 2020): sum of |theta * dR/dtheta| over conv and linear weights, where
  R is the sum of the outputs of the network with BatchNorm removed, all weights made
  positive, in float64, for an all-ones input.
- naswot (Mellor et al., ICML 2021): log|det K|, K[i, j] the number of ReLU units on which
  images i and j agree (both active or both inactive). Codes come from ReLU outputs only (the
  SE gates of GhostNet are hard-sigmoids, not ReLUs).
- grad_norm: sum over conv and linear layers of the L2 norm of the cross-entropy gradient.
- snip (Lee et al., ICLR 2019): sum of |theta * dL/dtheta| over conv and linear weights.
- jacob_cov (Mellor et al., 2020 preprint): -sum(log(v + k) + 1 / (v + k)), k = 1e-5, over the
  eigenvalues v of the correlation matrix of the input Jacobians of the images.
- zico (Li et al., ICLR 2023): sum over layers of log(sum over weights of mean|g| / std(g)),
  the gradient statistics taken over the two halves of the batch.
- meco (Jiang et al., NeurIPS 2023): sum over every module's 4-D output of the minimum
  eigenvalue of the Pearson correlation matrix of its channels, for the first image.
- params, flops: the counts, as baselines every score must beat.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..arch.config import NetConfig
from ..arch.counting import analytic_counts
from ..arch.model import build_model
from ..errors import ConfigError

_WEIGHTED = (nn.Conv2d, nn.Linear)


def _weighted(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, _WEIGHTED)]


def _loss_backward(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> None:
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(images), labels).backward()


def _forward_with_hooks(model: nn.Module, images: torch.Tensor, hook: Callable,
                        modules: list[nn.Module]) -> None:
    """One training-mode forward pass without gradients, `hook` on each of `modules`."""
    handles = [m.register_forward_hook(hook) for m in modules]
    try:
        model.train()
        with torch.no_grad():
            model(images)
    finally:
        for h in handles:
            h.remove()


def synflow(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    net = copy.deepcopy(model).double().eval()
    for name, module in list(net.named_modules()):
        if isinstance(module, nn.BatchNorm2d):  # BatchNorm off, as the reference code builds it
            parent = net.get_submodule(name.rsplit(".", 1)[0]) if "." in name else net
            setattr(parent, name.rsplit(".", 1)[-1], nn.Identity())
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    net.zero_grad(set_to_none=True)
    ones = torch.ones((1, *images.shape[1:]), dtype=torch.float64)
    net(ones).sum().backward()
    total = 0.0
    for m in _weighted(net):
        if m.weight.grad is not None:
            total += float((m.weight.detach() * m.weight.grad).abs().sum())
    return total


def naswot(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    n = images.shape[0]
    kernel = torch.zeros(n, n, dtype=torch.float64)

    def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        codes = (output.detach().reshape(n, -1) > 0).double()
        kernel.add_(codes @ codes.T + (1 - codes) @ (1 - codes).T)

    _forward_with_hooks(model, images, hook, [m for m in model.modules()
                                              if isinstance(m, nn.ReLU)])
    return float(torch.linalg.slogdet(kernel)[1])


def grad_norm(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    model.train()
    _loss_backward(model, images, labels)
    return float(sum(m.weight.grad.norm() for m in _weighted(model)
                     if m.weight.grad is not None))


def snip(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    model.train()
    _loss_backward(model, images, labels)
    return float(sum((m.weight.detach() * m.weight.grad).abs().sum() for m in _weighted(model)
                     if m.weight.grad is not None))


def jacob_cov(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    model.train()
    x = images.clone().requires_grad_(True)
    model.zero_grad(set_to_none=True)
    model(x).sum().backward()  # the images do not interact except through BatchNorm
    jacobians = x.grad.reshape(x.shape[0], -1).double()
    corr = torch.corrcoef(jacobians)
    v = torch.linalg.eigvalsh(corr)
    k = 1e-5
    return float(-torch.sum(torch.log(v + k) + 1.0 / (v + k)))


def zico(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    if images.shape[0] < 2:
        raise ConfigError("zico needs at least 2 images (gradients of two halves)")
    model.train()
    half = images.shape[0] // 2
    grads: list[list[torch.Tensor]] = []
    layers = _weighted(model)
    for part in (slice(0, half), slice(half, 2 * half)):
        _loss_backward(model, images[part], labels[part])
        grads.append([m.weight.grad.detach().clone() for m in layers])
    score = 0.0
    for per_batch in zip(*grads, strict=True):
        g = torch.stack(per_batch).double()
        # the unbiased std over the batches, written out: Tensor.std over a leading dim of 2
        # runs a strided reduction that took twice the forward and backward passes
        std = ((g - g.mean(dim=0)) ** 2).sum(dim=0).div(g.shape[0] - 1).sqrt()
        mean_abs = g.abs().mean(dim=0)
        nonzero = std != 0
        ratio = float((mean_abs[nonzero] / std[nonzero]).sum())
        if ratio != 0:
            score += math.log(ratio)
    return score


def meco(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    values: list[float] = []

    def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        if not isinstance(output, torch.Tensor) or output.dim() != 4:
            return  # other outputs give a nan correlation, which the reference counts as 0
        fea = output[0].detach().double().reshape(output.shape[1], -1)
        channels, positions = fea.shape
        # A correlation matrix is positive semi-definite, so its smallest eigenvalue is 0
        # whenever it is singular: a constant channel (a zeroed row, as the reference code
        # zeroes its nan) or fewer positions than channels (rank <= positions - 1). The
        # reference computes that 0 up to rounding; it is not computed here.
        if positions - 1 < channels or bool((fea.std(dim=1) == 0).any()):
            values.append(0.0)
            return
        if channels == 1:  # the 1x1 correlation matrix [1]; torch.corrcoef gives a scalar
            values.append(1.0)
            return
        values.append(float(torch.linalg.eigvalsh(torch.corrcoef(fea))[0]))

    _forward_with_hooks(model, images, hook, list(model.modules()))
    return float(sum(values))


def _params(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    return float(sum(p.numel() for p in model.parameters()))


_SCORES: dict[str, Callable[[nn.Module, torch.Tensor, torch.Tensor], float]] = {
    "synflow": synflow, "naswot": naswot, "grad_norm": grad_norm, "snip": snip,
    "jacob_cov": jacob_cov, "zico": zico, "meco": meco, "params": _params,
}
SCORE_NAMES = (*_SCORES, "flops")


def score_model(model: nn.Module, name: str, images: torch.Tensor,
                labels: torch.Tensor) -> float:
    """Score a built model (its weights as they are) with one batch; higher is better."""
    if name not in _SCORES:
        raise ConfigError(f"score {name!r}: unknown (known: {', '.join(SCORE_NAMES)}; flops "
                          "needs a config)")
    return _SCORES[name](model, images, labels)


def score_architecture(cfg: NetConfig, name: str, images: torch.Tensor, labels: torch.Tensor,
                       seed: int = 0) -> float:
    """Score `cfg` (the architecture as trained, e.g. from `proxy_config`) at initialisation
    from `seed` with one batch of proxy images; deterministic for a seed, higher is better.

    Raises:
        ConfigError: for an unknown score name, listing the known ones.
    """
    if name not in SCORE_NAMES:
        raise ConfigError(f"score {name!r}: unknown (known: {', '.join(SCORE_NAMES)})")
    if name == "flops":
        return float(analytic_counts(cfg).flops)
    torch.manual_seed(seed)
    model = build_model(cfg)
    return score_model(model, name, images, labels)
