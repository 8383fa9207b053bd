"""One set of weights that holds every architecture of a GhostNet space as a sub-network.

How each choice shares weights (the sub-network takes a part of the largest tensor):

- width, expansion: the first channels of every convolution, BatchNorm and SE layer (a
  narrower layer is the first output and input channels of the widest one);
- depth: the first blocks of each stage of the space (block j of a stage is the same
  weights whatever the stage's depth);
- depthwise kernel k (stride-2 blocks and shortcuts) and cheap kernel d: the centre of the
  largest kernel;
- ghost ratio s: the primary 1x1 conv makes m = ceil(out/s) intrinsic maps, the first m
  filters of the s=2 conv (the most intrinsic maps any s makes); the cheap depthwise conv
  makes s-1 ghost maps from each intrinsic map, replica r of intrinsic map i is the same
  filter for every s (the largest s of the space fixes how many replicas are kept);
- SE on or off: a block with SE uses the first channels of the SE layers every block holds;
  a block without SE skips them.

GhostNetV2's attention and GhostNetV3's branches are not shared: a space that offers them is
refused. A sub-network runs through `torch.func.functional_call` on a module built on the
meta device, with slices of the shared tensors as its parameters, so gradients of every
sub-network land on the shared weights; `extract` copies the slices into an ordinary model.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..arch.config import NetConfig
from ..arch.layers import ghost_channels
from ..arch.model import GhostNet, build_model
from ..arch.reference import group_like_timm
from ..errors import ConfigError
from ..spaces.space import STAGE_NAMES, SearchSpace


@dataclass(frozen=True)
class Task:
    """What the shared weights are trained for: the proxy form of every architecture (classes,
    image size and stem stride of the training data), as `search.proxy.proxy_config` makes."""

    num_classes: int = 10
    resolution: int = 32
    stem_stride: int = 1

    def adapt(self, cfg: NetConfig) -> NetConfig:
        return dataclasses.replace(cfg, num_classes=self.num_classes,
                                   resolution=self.resolution, stem_stride=self.stem_stride)


def check_space(space: SearchSpace) -> None:
    if set(space.stage_keys) - {"ghost_ratio", "cheap_kernel", "kernel", "expansion", "depth",
                                "se"}:
        raise ConfigError(f"space {space.name!r} offers DFC attention or GhostNetV3 branches, "
                          "which a supernet does not share; use a GhostNet (V1) space")


def largest_params(space: SearchSpace) -> dict[str, Any]:
    """The point whose every tensor is the largest of the space: widest, deepest, largest
    expansion and kernels, the smallest ghost ratio (the most intrinsic maps) and SE on every
    block where the space allows it."""
    params: dict[str, Any] = {"width": max(space.width)}
    for name, stage in zip(STAGE_NAMES, space.stages, strict=True):
        params.update({
            f"{name}.ghost_ratio": min(stage.ghost_ratio),
            f"{name}.cheap_kernel": max(stage.cheap_kernel),
            f"{name}.kernel": max(stage.kernel), f"{name}.expansion": max(stage.expansion),
            f"{name}.depth": max(stage.depth),
            f"{name}.se": "all" if "all" in stage.se else "reference",
        })
    return params


def block_slots(space: SearchSpace, params: dict[str, Any]) -> list[tuple[int, int]]:
    """(stage of the space, position in it) of each bottleneck of `params`, in order."""
    params = space.snap(params)
    return [(s, j) for s, name in enumerate(STAGE_NAMES)
            for j in range(int(params[f"{name}.depth"]))]


def block_names(cfg: NetConfig) -> list[str]:
    """Module name of each bottleneck of `cfg` in order (`blocks.i.j`, timm's grouping), and
    last the head conv's stage (`blocks.N.0`)."""
    groups = group_like_timm([b for stage in cfg.stages for b in stage])
    names = [f"blocks.{i}.{j}" for i, g in enumerate(groups) for j in range(len(g))]
    return names + [f"blocks.{len(groups)}.0"]


@functools.lru_cache(maxsize=256)
def _meta_model(cfg: NetConfig) -> GhostNet:
    with torch.device("meta"):
        return build_model(cfg)


class SuperNet(nn.Module):
    """The shared weights of every architecture of `space` in the proxy form of `task`."""

    def __init__(self, space: SearchSpace, task: Task = Task()) -> None:
        super().__init__()
        check_space(space)
        self.space, self.task = space, task
        self.top_params = largest_params(space)
        self.top_config = task.adapt(space.build_config(self.top_params))
        self.top_slots = block_slots(space, self.top_params)
        self.top_names = block_names(self.top_config)
        # replicas of the cheap operation: the largest s - 1 of each stage
        self.replicas = [max(stage.ghost_ratio) - 1 for stage in space.stages]
        model = build_model(self.top_config)
        state = dict(model.state_dict())
        blocks = [b for stage in self.top_config.stages for b in stage]
        for name, (stage, _), block in zip(self.top_names, self.top_slots, blocks, strict=False):
            for module in ("ghost1", "ghost2"):
                out = block.expansion if module == "ghost1" else block.out_channels
                m, _ = ghost_channels(out, block.ghost_ratio)
                width = m * self.replicas[stage]
                prefix = f"{name}.{module}.cheap_operation"
                if width == state[f"{prefix}.0.weight"].shape[0]:
                    continue
                conv = nn.Conv2d(m, width, block.cheap_kernel, groups=m, bias=False)
                bn = nn.BatchNorm2d(width)
                state[f"{prefix}.0.weight"] = conv.weight.detach()
                for k, v in bn.state_dict().items():
                    state[f"{prefix}.1.{k}"] = v
        buffers = {name for name, _ in model.named_buffers()}
        self.params = nn.ParameterList()
        self._where: dict[str, tuple[bool, int | str]] = {}
        for i, (k, v) in enumerate(state.items()):
            if v.is_floating_point() and k not in buffers:
                self._where[k] = (True, len(self.params))
                self.params.append(nn.Parameter(v.clone()))
            else:
                self.register_buffer(f"b{i}", v.clone())
                self._where[k] = (False, f"b{i}")

    def tensor(self, key: str) -> torch.Tensor:
        is_param, at = self._where[key]
        return self.params[at] if is_param else getattr(self, at)

    # -- one sub-network -----------------------------------------------------------------

    def config(self, params: dict[str, Any]) -> NetConfig:
        """The proxy-form config of the point `params` of the space."""
        return self.task.adapt(self.space.build_config(params))

    def sub_state(self, params: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Every parameter and buffer of the sub-network `params`, as parts of the shared
        tensors: gradients of the parts reach the shared weights, and BatchNorm statistics
        the shared buffers (except the cheap operation's, which are gathered copies)."""
        cfg = self.config(params)
        model = _meta_model(cfg)
        slots = block_slots(self.space, params)
        top_of = {slot: name for slot, name in zip(self.top_slots, self.top_names, strict=False)}
        names = block_names(cfg)
        rename = {names[i]: top_of[slot] for i, slot in enumerate(slots)}
        rename[names[-1]] = self.top_names[-1]
        blocks = [b for stage in cfg.stages for b in stage]
        ratio_of = {names[i]: (blocks[i].ghost_ratio, slots[i][0]) for i in range(len(slots))}
        out: dict[str, torch.Tensor] = {}
        for key, meta in model.state_dict(keep_vars=True).items():
            owner = ".".join(key.split(".")[:3]) if key.startswith("blocks.") else ""
            top_key = rename[owner] + key[len(owner):] if owner in rename else key
            if top_key not in self._where:
                raise ConfigError(f"{key} of this sub-network has no shared weights ({top_key});"
                                  " the space holds a structure the largest network lacks")
            shared = self.tensor(top_key)
            if ".cheap_operation." in key and meta.dim() >= 1:
                s, stage = ratio_of[owner]
                out[key] = _cheap_part(shared, tuple(meta.shape), s - 1, self.replicas[stage])
            else:
                out[key] = _part(shared, tuple(meta.shape))
        return out

    def forward(self, x: torch.Tensor, params: dict[str, Any] | None = None) -> torch.Tensor:
        """Logits of the sub-network `params` (default: the largest)."""
        params = self.top_params if params is None else params
        model = _meta_model(self.config(params))
        model.train(self.training)
        return torch.func.functional_call(model, self.sub_state(params), (x,))

    def extract(self, params: dict[str, Any]) -> GhostNet:
        """The sub-network `params` as an ordinary model (`build_model` layout, timm's
        interface) holding copies of its shared weights."""
        model = build_model(self.config(params))
        state = {k: v.detach().clone() for k, v in self.sub_state(params).items()}
        model.load_state_dict(state)
        return model.train(self.training)


def _part(shared: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """The first channels of `shared` along every dimension, and the centre of a larger
    kernel (the last two dimensions of a 4-d conv weight); a parameter's part is made
    contiguous (a copy that gradients flow through: convolutions on strided weights run
    many times slower on a CPU), a buffer's stays a view (BatchNorm statistics reach the
    shared ones)."""
    if tuple(shared.shape) == shape:
        return shared
    index = []
    for d, (big, small) in enumerate(zip(shared.shape, shape, strict=True)):
        if small > big:
            raise ConfigError(f"a sub-network tensor of shape {shape} exceeds the shared "
                              f"{tuple(shared.shape)}")
        start = (big - small) // 2 if shared.dim() == 4 and d >= 2 else 0
        index.append(slice(start, start + small))
    part = shared[tuple(index)]
    return part.contiguous() if shared.requires_grad else part


def _cheap_part(shared: torch.Tensor, shape: tuple[int, ...], replicas: int,
                top_replicas: int) -> torch.Tensor:
    """The cheap operation's part for s - 1 = `replicas`: replica r of intrinsic map i is row
    i * top_replicas + r of the shared tensor (the layout of a depthwise conv with
    top_replicas outputs a group)."""
    if shared.dim() == 0:
        return shared
    m = shape[0] // replicas
    rows = torch.tensor([i * top_replicas + r for i in range(m) for r in range(replicas)],
                        device=shared.device)
    picked = shared.index_select(0, rows)
    return _part(picked, shape) if picked.dim() == 4 else picked

