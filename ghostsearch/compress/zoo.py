"""The CIFAR networks of the paper's compression experiments (Table 3): VGG-16 and ResNet-56.

VGG-16 for CIFAR is the 13-conv layout with BN used by the pruning literature the paper
compares with, with a 512-512-10 classifier; ResNet-56 is He et al.'s CIFAR ResNet (3 stages
of 9 basic blocks, 16/32/64 channels, parameter-free "option A" shortcuts).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .ghostify import ghostify

VGG16_LAYERS = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
                512, 512, 512)


class VGG(nn.Module):
    def __init__(self, layers: tuple = VGG16_LAYERS, num_classes: int = 10) -> None:
        super().__init__()
        mods: list[nn.Module] = []
        prev = 3
        for v in layers:
            if v == "M":
                mods.append(nn.MaxPool2d(2))
            else:
                mods += [nn.Conv2d(prev, v, 3, padding=1, bias=False), nn.BatchNorm2d(v),
                         nn.ReLU(inplace=True)]
                prev = v
        self.features = nn.Sequential(*mods)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Linear(prev, 512), nn.ReLU(inplace=True),
                                        nn.Linear(512, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


class BasicBlock(nn.Module):
    def __init__(self, in_chs: int, out_chs: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_chs, out_chs, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_chs)
        self.conv2 = nn.Conv2d(out_chs, out_chs, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_chs)
        self.stride, self.pad = stride, out_chs - in_chs

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        # option A: subsample and zero-pad channels, no parameters
        if self.stride > 1 or self.pad:
            x = x[:, :, ::self.stride, ::self.stride]
            x = F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, depth: int = 56, num_classes: int = 10) -> None:
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"depth={depth}: CIFAR ResNets have depth 6n+2 (20, 32, 44, 56...)")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        layers, prev = [], 16
        for i, width in enumerate((16, 32, 64)):
            blocks = []
            for j in range(n):
                blocks.append(BasicBlock(prev, width, 2 if i > 0 and j == 0 else 1))
                prev = width
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = layers
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def vgg16_cifar(num_classes: int = 10) -> VGG:
    return VGG(VGG16_LAYERS, num_classes)


def resnet56_cifar(num_classes: int = 10) -> CifarResNet:
    return CifarResNet(56, num_classes)


def _torchvision(name: str):
    def build(num_classes: int) -> nn.Module:
        import torchvision

        return getattr(torchvision.models, name)(weights=None, num_classes=num_classes)
    return build


# name -> (builder(num_classes), its usual input resolution)
MODELS = {
    "vgg16": (vgg16_cifar, 32),
    "resnet56": (resnet56_cifar, 32),
    "resnet18": (_torchvision("resnet18"), 224),
    "resnet50": (_torchvision("resnet50"), 224),
    "vgg16_bn": (_torchvision("vgg16_bn"), 224),
}


def _ghost(name: str):
    def build(num_classes: int) -> nn.Module:

        return ghostify(MODELS[name][0](num_classes), 2, 3)
    return build


MODELS.update({f"ghost-{n}": (_ghost(n), MODELS[n][1]) for n in list(MODELS)})


def make_model(name: str, num_classes: int = 10) -> tuple[nn.Module, int]:
    """A fresh model by name and its usual input size (`ghost-NAME`: ghostified, s=2, d=3)."""
    if name not in MODELS:

        raise ConfigError(f"--model {name!r}: choose one of {', '.join(sorted(MODELS))}")
    build, resolution = MODELS[name]
    return build(num_classes), resolution
