"""Datasets as uint8 tensors, decoded once, and a loader that augments whole batches on device.

Small images (CIFAR-sized) fit on the GPU many times over, so the proxy loop keeps them there
as uint8 and crops/flips/normalises whole batches with tensor ops: no DataLoader workers, no
PIL per step (measured once on an H100, torch 2.11, timm ghostnet_100 with a stride-1 stem, batch
512: a DataLoader+PIL loop took 29.7 s/epoch against 3.3-5 s this way; not rerun on a GPU since).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..cache import cache_root
from ..errors import ConfigError, DataError
from ..progress import progress_bar

DATASETS = ("cifar10", "cifar100", "imagefolder", "synthetic")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".gif", ".tif", ".tiff")
DEFAULT_VAL_SIZE = 5000
DEFAULT_DATA_DIR = "data"
# Decoded image folders are held in memory as uint8; larger folders are refused before decoding.
DEFAULT_MAX_DATA_GB = 8.0


@dataclass(frozen=True)
class Split:
    images: torch.Tensor  # uint8, N x C x H x W
    labels: torch.Tensor  # int64, N

    def __len__(self) -> int:
        return int(self.labels.numel())

    def to(self, device: torch.device | str) -> Split:
        return Split(self.images.to(device), self.labels.to(device))


@dataclass(frozen=True)
class Dataset:
    """Train (search-time training), val (held out of train: what the search selects on) and
    test (only reported)."""

    name: str
    train: Split
    val: Split
    test: Split
    num_classes: int
    mean: tuple[float, ...]  # per channel, on the 0-255 scale, from the training split
    std: tuple[float, ...]
    split_id: str = ""  # fingerprint of the held-out validation images (which ones, of what)
    classes: tuple[str, ...] = ()  # class names in label order, where the data set has them

    @property
    def resolution(self) -> int:
        return int(self.train.images.shape[-1])

    def preprocessing(self, interpolation: str = "bilinear") -> dict[str, Any]:
        """What a model trained on this data expects, in timm's pretrained_cfg terms (mean and
        std on the 0-1 scale): exported beside every architecture and checkpoint."""
        return {"input_size": [int(self.train.images.shape[1]), self.resolution, self.resolution],
                "mean": [round(m / 255, 6) for m in self.mean],
                "std": [round(s / 255, 6) for s in self.std],
                "interpolation": interpolation, "crop_pct": 1.0,
                "num_classes": self.num_classes, "classes": list(self.classes)}

    def summary(self) -> str:
        return (f"{self.name}: {len(self.train)} train / {len(self.val)} val (held out of train)"
                f" / {len(self.test)} test, {self.resolution}x{self.resolution}, "
                f"{self.num_classes} classes")


def _cache_dir() -> Path:
    return cache_root()


def _decode(path: Path, resolution: int | None) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if resolution is not None and im.size != (resolution, resolution):
                im = im.resize((resolution, resolution), Image.BILINEAR)
            return np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DataError(f"{path}: not a readable image ({type(e).__name__}); remove or "
                          "replace it") from None


def _scan_folder(root: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    if not root.is_dir():
        raise DataError(f"{root}: no such directory")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DataError(f"{root}: no class folders (expected {root}/<class>/<image>)")
    items = []
    for label, cls in enumerate(classes):
        for f in sorted((root / cls).iterdir()):
            if f.is_file() and not f.name.startswith("."):
                if f.suffix.lower() not in IMAGE_SUFFIXES:
                    raise DataError(f"{f}: not an image file (expected "
                                      f"{', '.join(IMAGE_SUFFIXES)}); remove it from the folder")
                items.append((f, label))
    if not items:
        raise DataError(f"{root}: the class folders hold no images")
    return classes, items


def decoded_bytes(n_images: int, resolution: int) -> int:
    """Memory that `n_images` RGB images of `resolution` squared take as uint8 tensors."""
    return n_images * 3 * resolution * resolution


def _load_folder(root: Path, resolution: int | None, progress: bool,
                 max_gb: float = DEFAULT_MAX_DATA_GB) -> tuple[Split, list[str]]:
    """Decode an ImageFolder once; later calls read the uint8 cache (keyed by files and mtimes).

    A folder whose decoded size exceeds `max_gb` is refused before anything is decoded: the
    whole split is held in memory, and an ImageNet-sized folder would exhaust it."""
    classes, items = _scan_folder(root)
    key = hashlib.sha256()
    key.update(f"{root.resolve()}|{resolution}|{classes}".encode())
    for f, label in items:
        st = f.stat()
        key.update(f"{f.name}|{label}|{st.st_size}|{st.st_mtime_ns}".encode())
    cache = _cache_dir() / f"{root.name}-{key.hexdigest()[:16]}.pt"
    if cache.exists():
        data = torch.load(cache, weights_only=True)
        return Split(data["images"], data["labels"]), classes
    first = _decode(items[0][0], resolution)
    res = resolution
    if res is None:
        if first.shape[0] != first.shape[1]:
            raise DataError(f"{items[0][0]}: images are not square; pass --resolution")
        res = first.shape[0]
    need = decoded_bytes(len(items), res)
    if need > max_gb * 1e9:
        raise DataError(f"{root}: {len(items)} images at {res}x{res} take {need / 1e9:.1f} GB "
                        f"decoded, over the {max_gb:g} GB limit; pass --resolution to shrink "
                        "them, --max-data-gb to raise the limit, or use a smaller folder")

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        arrays = list(progress_bar(pool.map(lambda it: _decode(it[0], res), items),
                                   total=len(items), desc=f"decoding {root}",
                                   disable=not progress, leave=False))
    for (f, _), a in zip(items, arrays, strict=True):
        if a.shape != (res, res, 3):
            raise DataError(f"{f}: size {a.shape[1]}x{a.shape[0]} differs from {res}x{res}; "
                              "pass --resolution to resize all images")
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    labels = torch.tensor([label for _, label in items], dtype=torch.int64)
    cache.parent.mkdir(parents=True, exist_ok=True)
    # a name of this process's own: workers that decode the same folder at once each write
    # their own file, and the last atomic rename wins with identical content
    tmp = cache.with_suffix(f".{os.getpid()}.tmp")
    torch.save({"images": images, "labels": labels}, tmp)
    tmp.replace(cache)
    return Split(images, labels), classes


def _load_torchvision(name: str, data_dir: Path) -> tuple[Split, Split, int, list[str]]:
    """torchvision's CIFAR files in `data_dir`, downloaded there first when missing and the
    network allows (with a timeout: a firewall that drops packets must not hang the search)."""
    import socket

    import torchvision

    cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
    folder = "cifar-10-batches-py" if name == "cifar10" else "cifar-100-python"
    if not (data_dir / folder).is_dir() and (data_dir / "train").is_dir():
        raise DataError(f"--data-dir {data_dir} holds an image folder (train/), not "
                          f"torchvision's {folder}/; pass --data imagefolder")
    existed = data_dir.exists()
    splits = []
    for train in (True, False):
        try:
            ds = cls(str(data_dir), train=train, download=False)
        except RuntimeError:
            timeout = socket.getdefaulttimeout()
            socket.setdefaulttimeout(60)
            try:
                ds = cls(str(data_dir), train=train, download=True)
            except Exception as e:  # no network: say where the files go
                if not existed and data_dir.is_dir() and not any(data_dir.iterdir()):
                    data_dir.rmdir()
                raise DataError(
                    f"{name} not found in {data_dir} and could not be downloaded "
                    f"({type(e).__name__}); put torchvision's {folder}/ there, pass "
                    "--data imagefolder --data-dir DIR for a folder of images, or --data "
                    "synthetic to try the tool") from None
            finally:
                socket.setdefaulttimeout(timeout)
        images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
        splits.append(Split(images, torch.tensor(ds.targets, dtype=torch.int64)))
    return splits[0], splits[1], 10 if name == "cifar10" else 100, list(ds.classes)


def synthetic_split(n: int, num_classes: int, resolution: int, seed: int) -> Split:
    """Learnable random images: each class has its own colour and stripe pattern, plus noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % num_classes
    labels = labels[torch.randperm(n, generator=g)]
    colours = torch.rand(num_classes, 3, 1, 1, generator=torch.Generator().manual_seed(1234))
    freq = (torch.arange(num_classes) % 4 + 1).float()
    xs = torch.arange(resolution).float()
    stripes = torch.sin(xs[None, :] * freq[:, None] * 0.5)  # classes x W
    base = colours[labels] * 160 + 40 * stripes[labels][:, None, None, :]
    noise = torch.randn(n, 3, resolution, resolution, generator=g) * 30
    images = (base + noise + 40).clamp(0, 255).to(torch.uint8)
    return Split(images, labels)


def hold_out_indices(n: int, val_size: int | None, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the training and validation images of a training set of `n` images."""
    if val_size is None:
        val_size = min(DEFAULT_VAL_SIZE, n // 10)
    if not 0 < val_size < n:
        raise ConfigError(f"--val-size {val_size}: must be between 1 and {n - 1} "
                          f"(the training set has {n} images)")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[val_size:], perm[:val_size]


def content_fingerprint(data: Dataset) -> str:
    """Hash of every image and label of the training, held-out and test splits of a
    `Dataset`: two loads agree only when a model would see exactly the same pixels (path,
    machine and decoding cache do not matter)."""
    h = hashlib.sha256(f"{data.name}|{data.num_classes}|".encode())
    for split in (data.train, data.val, data.test):
        for t in (split.images, split.labels):
            h.update(str(tuple(t.shape)).encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def split_fingerprint(name: str, n: int, val_idx: torch.Tensor) -> str:
    """Short hash of which images of an `n`-image training set are held out for validation."""
    h = hashlib.sha256(f"{name}|{n}|".encode())
    h.update(val_idx.to(torch.int64).numpy().tobytes())
    return h.hexdigest()[:12]


def _hold_out(train: Split, val_size: int | None, seed: int) -> tuple[Split, Split, torch.Tensor]:
    train_idx, val_idx = hold_out_indices(len(train), val_size, seed)
    return (Split(train.images[train_idx], train.labels[train_idx]),
            Split(train.images[val_idx], train.labels[val_idx]), val_idx)


def train_files(data_dir: str | Path, *, val_size: int | None = None,
                train_subset: int | None = None, seed: int = 0) -> list[tuple[Path, int]]:
    """(file, label) of the images in `load_data("imagefolder", data_dir, ...)`'s training
    split, in the same order: for loops that decode the files at every step."""
    _, items = _scan_folder(Path(data_dir) / "train")
    train_idx, _ = hold_out_indices(len(items), val_size, seed)
    if train_subset is not None:
        train_idx = train_idx[:train_subset]
    return [items[i] for i in train_idx.tolist()]


def load_data(
    name: str,
    data_dir: str | Path | None = None,
    *,
    val_size: int | None = None,
    train_subset: int | None = None,
    resolution: int | None = None,
    seed: int = 0,
    progress: bool = True,
    synthetic_size: tuple[int, int] = (600, 200),
    synthetic_classes: int = 10,
    max_data_gb: float = DEFAULT_MAX_DATA_GB,
    train_cap: int | None = None,
    val_cap: int | None = None,
) -> Dataset:
    """Load a dataset and hold a validation split out of its training set.

    Args:
        name: cifar10, cifar100 (torchvision's files in `data_dir`), imagefolder (`data_dir`
            with train/ and val/ or test/ of class folders) or synthetic (for tests).
        val_size: images held out of train for selection; default 5,000 or a tenth if smaller.
        train_subset: keep only this many training images (after the hold-out), for quick runs.
        resolution: resize image folders to this size (default: their own, if square).
        seed: fixes the hold-out and the subset, so every trial of a study sees the same split.
        max_data_gb: refuse an image folder whose decoded images exceed this many GB.
        train_cap, val_cap: at most this many training / held-out images (a preset's subset,
            which a smaller data set simply fits under); `train_subset` and `val_size` win.
    """
    if name not in DATASETS:
        raise ConfigError(f"--data {name!r}: choose one of {', '.join(DATASETS)}")
    if name == "synthetic":
        res = resolution or 32
        n_train, n_test = synthetic_size
        train = synthetic_split(n_train, synthetic_classes, res, seed)
        test = synthetic_split(n_test, synthetic_classes, res, seed + 1)
        num_classes = synthetic_classes
        classes = [f"class{i}" for i in range(num_classes)]
    else:
        if data_dir is None:
            raise DataError(f"--data {name} needs --data-dir (where the data set lies)")
        root = Path(data_dir)
        if name == "imagefolder":
            if not root.is_dir():
                raise DataError(f"--data-dir {root}: no such directory")
            eval_dir = next((root / d for d in ("val", "test") if (root / d).is_dir()), None)
            if not (root / "train").is_dir() or eval_dir is None:
                raise DataError(f"--data-dir {root}: expected {root}/train and {root}/val "
                                  "(or test), each with one folder of images per class")
            train, classes = _load_folder(root / "train", resolution, progress, max_data_gb)
            test, test_classes = _load_folder(eval_dir, resolution or train.images.shape[-1],
                                              progress, max_data_gb)
            if test_classes != classes:
                raise DataError(f"{eval_dir}: its class folders differ from {root}/train's")
            num_classes = len(classes)
        else:
            train, test, num_classes, classes = _load_torchvision(name, root)
    n_train = len(train)
    if val_size is None and val_cap is not None:
        val_size = min(val_cap, min(DEFAULT_VAL_SIZE, n_train // 10))
    train, val, val_idx = _hold_out(train, val_size, seed)
    if train_subset is None and train_cap is not None and train_cap < len(train):
        train_subset = train_cap
    if train_subset is not None:
        if not 0 < train_subset <= len(train):
            raise ConfigError(f"--train-subset {train_subset}: must be between 1 and "
                              f"{len(train)}")
        train = Split(train.images[:train_subset], train.labels[:train_subset])
    mean, std = channel_stats(train.images)
    return Dataset(name, train, val, test, num_classes, mean, std,
                   split_id=split_fingerprint(name, n_train, val_idx), classes=tuple(classes))


def channel_stats(images: torch.Tensor, chunk: int = 4096) -> tuple[tuple[float, ...],
                                                                      tuple[float, ...]]:
    """Per-channel mean and std on the 0-255 scale, summed in chunks of float64 so that no
    float copy of the whole split is ever made."""
    c = images.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    squares = torch.zeros(c, dtype=torch.float64)
    for i in range(0, images.shape[0], chunk):
        x = images[i:i + chunk].to(torch.float64)
        total += x.sum(dim=(0, 2, 3))
        squares += (x * x).sum(dim=(0, 2, 3))
    n = images.numel() // c
    mean = total / n
    var = (squares - n * mean * mean) / max(1, n - 1)
    std = var.clamp_min(0).sqrt().clamp_min(1.0)
    return tuple(mean.tolist()), tuple(std.tolist())


class DeviceLoader:
    """Batches from a device-resident uint8 split: random crop with padding, flip and cutout
    (each per image, as a recipe asks) on device, normalised to float, channels_last. One
    index permutation per epoch, no host round-trips."""

    def __init__(self, split: Split, batch_size: int, mean: tuple[float, ...],
                 std: tuple[float, ...], *, train: bool, pad: int = 4, seed: int = 0,
                 device: torch.device | str = "cpu", flip: bool = True,
                 cutout: int = 0) -> None:
        self.split = split.to(device)
        self.batch_size = min(batch_size, len(split)) if train else batch_size
        self.train = train
        self.pad = pad
        self.flip = flip
        self.cutout = cutout
        self.device = torch.device(device)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.mean = torch.tensor(mean, device=self.device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, device=self.device).view(1, -1, 1, 1)

    def __len__(self) -> int:
        n = len(self.split)
        return n // self.batch_size if self.train else -(-n // self.batch_size)

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        p = self.pad
        if p > 0:
            padded = torch.nn.functional.pad(x, (p, p, p, p))
            dy = torch.randint(0, 2 * p + 1, (b,), device=self.device, generator=self.generator)
            dx = torch.randint(0, 2 * p + 1, (b,), device=self.device, generator=self.generator)
            rows = (dy[:, None] + torch.arange(h, device=self.device))[:, None, :, None]
            cols = (dx[:, None] + torch.arange(w, device=self.device))[:, None, None, :]
            chans = torch.arange(x.shape[1], device=self.device)[None, :, None, None]
            x = padded[torch.arange(b, device=self.device)[:, None, None, None], chans, rows, cols]
        if self.flip:
            flip = torch.rand(b, device=self.device, generator=self.generator) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        if self.cutout > 0:  # one square per image, its centre anywhere (it may overhang)
            cy = torch.randint(0, h, (b,), device=self.device, generator=self.generator)
            cx = torch.randint(0, w, (b,), device=self.device, generator=self.generator)
            half = self.cutout // 2
            ys = torch.arange(h, device=self.device)[None, :]
            xs = torch.arange(w, device=self.device)[None, :]
            in_y = (ys >= (cy - half)[:, None]) & (ys < (cy - half + self.cutout)[:, None])
            in_x = (xs >= (cx - half)[:, None]) & (xs < (cx - half + self.cutout)[:, None])
            hole = in_y[:, None, :, None] & in_x[:, None, None, :]
            x = x.masked_fill(hole, 0.0)  # zero before normalisation: a black square
        return x

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.split)
        if self.train:  # drop the ragged last batch: every step has the same shape
            order = torch.randperm(n, device=self.device, generator=self.generator)
        else:
            order = torch.arange(n, device=self.device)
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            x = self.split.images[idx].float()
            if self.train:
                x = self._augment(x)
            x = ((x - self.mean) / self.std).contiguous(memory_format=torch.channels_last)
            yield x, self.split.labels[idx]
