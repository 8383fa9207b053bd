from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ghostsearch import ConfigError, DataError, reference_config
from ghostsearch.search.proxy import proxy_config
from ghostsearch.train.data import DeviceLoader, load_data, synthetic_split
from ghostsearch.train.loop import train_proxy
from ghostsearch.train.recipe import Recipe


def _image_folder(root, classes=("cat", "dog"), per_class=12, size=8, splits=("train", "test")):
    rng = np.random.default_rng(0)
    for split in splits:
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(per_class):
                arr = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
                Image.fromarray(arr).save(root / split / c / f"{i}.jpg")
    return root


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GHOSTSEARCH_CACHE", str(tmp_path / "cache"))


def test_imagefolder_holds_out_validation_and_caches(tmp_path):
    root = _image_folder(tmp_path / "d")
    data = load_data("imagefolder", root, progress=False)
    # 24 training images: a tenth (2) held out for validation, test kept apart
    assert (len(data.train), len(data.val), len(data.test)) == (22, 2, 24)
    assert data.train.images.dtype == torch.uint8 and data.train.images.shape[1:] == (3, 8, 8)
    assert data.num_classes == 2 and data.resolution == 8
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 2
    again = load_data("imagefolder", root, progress=False)
    assert torch.equal(again.train.images, data.train.images)
    resized = load_data("imagefolder", root, resolution=4, progress=False)
    assert resized.resolution == 4


def test_imagefolder_errors(tmp_path):
    with pytest.raises(DataError, match="needs --data-dir"):
        load_data("imagefolder", None)
    with pytest.raises(DataError, match="no such directory"):
        load_data("imagefolder", tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="expected .*/train and .*/val"):
        load_data("imagefolder", tmp_path / "empty")
    root = _image_folder(tmp_path / "d")
    (root / "train" / "cat" / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="notes.txt: not an image file"):
        load_data("imagefolder", root, progress=False)
    (root / "train" / "cat" / "notes.txt").unlink()
    (root / "train" / "cat" / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match="broken.jpg: not a readable image"):
        load_data("imagefolder", root, progress=False)
    with pytest.raises(ConfigError, match="--data 'mnist'"):
        load_data("mnist")


def test_cifar_missing_says_where_to_put_it(tmp_path, monkeypatch):
    import torchvision

    def no_network(*args, **kwargs):
        raise RuntimeError("no network")

    monkeypatch.setattr(torchvision.datasets.CIFAR10, "download", no_network)
    with pytest.raises(DataError, match="put torchvision's cifar-10-batches-py/ there"):
        load_data("cifar10", tmp_path)
    # the default ./data did not exist: the failed download leaves no empty folder behind
    with pytest.raises(DataError, match="or --data synthetic to try the tool"):
        load_data("cifar10", tmp_path / "data")
    assert not (tmp_path / "data").exists()


def test_cifar_on_an_image_folder_names_the_right_option(tmp_path):
    (tmp_path / "train" / "cat").mkdir(parents=True)
    with pytest.raises(DataError, match=r"holds an image folder \(train/\), not torchvision's "
                                          r"cifar-100-python/; pass --data imagefolder"):
        load_data("cifar100", tmp_path)


def test_validation_split_is_fixed_by_seed_and_disjoint():
    a = load_data("synthetic", seed=3, progress=False)
    b = load_data("synthetic", seed=3, progress=False)
    assert torch.equal(a.val.images, b.val.images)
    assert (len(a.train), len(a.val)) == (540, 60)
    with pytest.raises(ConfigError, match="--val-size 600"):
        load_data("synthetic", val_size=600)


def test_device_loader_augments_whole_batches():
    split = synthetic_split(64, 4, 8, seed=0)
    loader = DeviceLoader(split, 16, (128.0,) * 3, (64.0,) * 3, train=True, seed=0)
    batches = list(loader)
    assert len(batches) == 4
    x, y = batches[0]
    assert x.shape == (16, 3, 8, 8) and x.dtype == torch.float32 and y.shape == (16,)
    assert x.is_contiguous(memory_format=torch.channels_last)
    # a padded crop moves content: some pixels are the zero padding, normalised
    assert (x == (0 - 128.0) / 64.0).any()
    ev = DeviceLoader(split, 10, (0.0,) * 3, (1.0,) * 3, train=False)
    assert sum(len(b[1]) for b in ev) == 64  # evaluation keeps the ragged last batch
    torch.testing.assert_close(next(iter(ev))[0], split.images[:10].float())


def test_proxy_learns_and_is_reproducible_on_cpu():
    data = load_data("synthetic", resolution=16, progress=False)
    cfg = proxy_config(reference_config(0.3), data, Recipe())
    assert (cfg.num_classes, cfg.resolution, cfg.stem_stride) == (10, 16, 1)
    protocol = Recipe(epochs=3, batch_size=32, lr=0.4)
    seen = []
    r1 = train_proxy(cfg, data, protocol, seed=5, on_epoch=lambda e, a: seen.append((e, a)))
    r2 = train_proxy(cfg, data, protocol, seed=5)
    assert r1.val_curve == r2.val_curve and r1.test_acc == r2.test_acc
    assert [e for e, _ in seen] == [0, 1, 2] and len(r1.val_curve) == 3
    assert r1.val_acc > 30.0  # 10 classes: chance is 10%
    assert r1.train_seconds > 0


def test_protocol_validation_and_schedule():
    with pytest.raises(ConfigError, match="epochs=0: must be >= 1"):
        Recipe(epochs=0)
    with pytest.raises(ConfigError, match="schedule='step': choose one of"):
        Recipe(schedule="step")
    p = Recipe(lr=0.4, batch_size=256, warmup=0.2)
    lrs = [p.lr_at(s, 100) for s in range(100)]
    assert max(lrs) == pytest.approx(0.2)  # scaled linearly with the batch size
    assert lrs[0] < lrs[19] and lrs[-1] < 0.01


def test_an_image_folder_too_large_for_memory_is_refused_before_decoding(tmp_path,
                                                                          monkeypatch):
    import ghostsearch.train.data as data_mod

    root = _image_folder(tmp_path / "d")  # 24 images of 8x8: 4,608 bytes decoded
    decoded = []
    real = data_mod._decode
    monkeypatch.setattr(data_mod, "_decode", lambda *a: decoded.append(a) or real(*a))
    with pytest.raises(DataError, match=r"24 images at 8x8 take 0.0 GB decoded, over the "
                                        r"4e-06 GB limit; pass --resolution"):
        load_data("imagefolder", root, progress=False, max_data_gb=4e-6)
    assert len(decoded) == 1  # only the first image, for its size
    data = load_data("imagefolder", root, progress=False, max_data_gb=5e-6)
    assert len(data.train) == 22


def test_preset_caps_fit_small_data_and_explicit_sizes_win():
    capped = load_data("synthetic", synthetic_size=(600, 100), train_cap=100, val_cap=50)
    assert (len(capped.train), len(capped.val)) == (100, 50)
    small = load_data("synthetic", synthetic_size=(60, 20), train_cap=1000, val_cap=500)
    assert (len(small.train), len(small.val)) == (54, 6)  # a tenth held out, the rest kept
    explicit = load_data("synthetic", synthetic_size=(600, 100), train_subset=300, val_size=80,
                         train_cap=100, val_cap=50)
    assert (len(explicit.train), len(explicit.val)) == (300, 80)


def test_split_fingerprint_names_the_held_out_images():
    a = load_data("synthetic", val_size=50)
    assert a.split_id == load_data("synthetic", val_size=50).split_id
    assert a.split_id != load_data("synthetic", val_size=50, seed=1).split_id
    assert a.split_id != load_data("synthetic", val_size=60).split_id
