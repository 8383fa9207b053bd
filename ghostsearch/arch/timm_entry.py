"""timm's model registry entry `ghostsearch_arch`: a found architecture (or a reference
GhostNet) built through `timm.create_model`, so timm's features_only wrappers, pretrained_cfg
and local checkpoint loading work on it. Registered when timm is first imported."""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .config import NetConfig, load_config, read_preprocessing
from .model import GhostNet, pretrained_cfg_for
from .reference import reference_config

__all__: list[str] = []
# timm's names of the references: (width, version)
REFERENCE_NAMES = {
    "ghostnet_050": (0.5, 1), "ghostnet_100": (1.0, 1), "ghostnet_130": (1.3, 1),
    "ghostnetv2_100": (1.0, 2), "ghostnetv2_130": (1.3, 2), "ghostnetv2_160": (1.6, 2),
    "ghostnetv3_050": (0.5, 3), "ghostnetv3_100": (1.0, 3), "ghostnetv3_130": (1.3, 3),
    "ghostnetv3_160": (1.6, 3),
}
_USAGE = ("ghostsearch_arch needs arch=: a config file or best_arch.json, a NetConfig, or a "
          f"reference name ({', '.join(REFERENCE_NAMES)})")


def resolve_arch(arch: Any) -> tuple[NetConfig, dict[str, Any] | None]:
    """The config and recorded preprocessing that `arch=` names."""
    if isinstance(arch, NetConfig):
        return arch, None
    if arch is None or not isinstance(arch, (str, Path)):
        raise ConfigError(f"{_USAGE}; got {arch!r}")
    if str(arch) in REFERENCE_NAMES:
        width, version = REFERENCE_NAMES[str(arch)]
        return reference_config(width, version=version), None
    if not Path(arch).exists():
        raise ConfigError(f"arch={str(arch)!r}: no such file; {_USAGE}")
    return load_config(arch), read_preprocessing(arch)


def ghostsearch_arch(pretrained: bool = False, arch: Any = None, **kwargs: Any) -> GhostNet:
    """A ghostsearch architecture through timm. Nothing is downloaded: `pretrained=True` needs
    a local checkpoint, `pretrained_cfg_overlay=dict(file=PATH)`."""
    from timm.models import build_model_with_cfg

    cfg, preprocessing = resolve_arch(arch)
    overlay = kwargs.get("pretrained_cfg_overlay") or {}
    if pretrained and not overlay.get("file"):
        raise ConfigError("ghostsearch_arch has no weights to download; load a local "
                          "checkpoint with pretrained=True, "
                          "pretrained_cfg_overlay=dict(file=PATH)")
    kwargs.pop("pretrained_cfg", None)
    return build_model_with_cfg(
        GhostNet, "ghostsearch_arch", pretrained,
        pretrained_cfg=pretrained_cfg_for(cfg, preprocessing), model_cfg=cfg,
        feature_cfg=dict(flatten_sequential=True), preprocessing=preprocessing, **kwargs)


def register() -> None:
    """Add `ghostsearch_arch` to timm's registry (once)."""
    from timm.models import is_model, register_model

    if not is_model("ghostsearch_arch"):
        register_model(ghostsearch_arch)


class _RegisterAfterImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Runs `register` right after timm's own import, so that importing ghostsearch does not
    pay for importing timm (seconds) when timm is not used."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != "timm":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec("timm")
        if spec is None or spec.loader is None:
            return None
        self._loader = spec.loader
        spec.loader = self
        return spec

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self._loader.exec_module(module)
        register()


def install() -> None:
    """Register now if timm is imported already, else as soon as it is."""
    if "timm" in sys.modules:
        register()
    elif importlib.util.find_spec("timm") is not None and not any(
            isinstance(f, _RegisterAfterImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _RegisterAfterImport())
