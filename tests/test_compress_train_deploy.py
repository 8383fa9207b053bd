from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from ghostsearch import ConfigError, build_model, reference_config
from ghostsearch.arch.counting import fvcore_flops
from ghostsearch.arch.layers import GhostModule
from ghostsearch.compress.ghostify import cheap_flops, count_ghostified, ghostify
from ghostsearch.compress.zoo import resnet56_cifar, vgg16_cifar
from ghostsearch.train.data import load_data
from ghostsearch.train.full import ModelSpec, load_init, train_full
from ghostsearch.train.recipe import Recipe

ROOT = Path(__file__).resolve().parent.parent


def weights(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.ndim > 1)


# exact counts of our models (fvcore, paper convention) and the ghostified ones at s=2, d=3
@pytest.mark.parametrize("name, build, res, flops, ghost_flops, w, ghost_w, n_ghost", [
    ("vgg16", vgg16_cifar, 32, 313_463_808, 158_699_520, 14_977_728, 7_642_080, 12),
    ("resnet56", resnet56_cifar, 32, 125_485_696, 65_286_784, 848_944, 434_080, 54),
])
def test_paper_cifar_models_halve(name, build, res, flops, ghost_flops, w, ghost_w, n_ghost):
    model = build()
    ghost = ghostify(model, 2, 3)
    assert count_ghostified(ghost) == n_ghost
    assert fvcore_flops(model, res)["paper"] == flops
    assert fvcore_flops(ghost, res)["paper"] == ghost_flops
    assert (weights(model), weights(ghost)) == (w, ghost_w)
    x = torch.randn(2, 3, res, res)
    model.eval(), ghost.eval()
    with torch.no_grad():
        assert ghost(x).shape == model(x).shape == (2, 10)
    # the paper: 313M -> 158M, 15.0M -> 7.7M weights; 125M -> 63M, 0.85M -> 0.43M
    assert 1.9 < flops / ghost_flops < 2.0 and 1.9 < w / ghost_w < 2.0


def test_resnet56_difference_from_the_paper_is_the_cheap_operations():
    ghost = ghostify(resnet56_cifar(), 2, 3)
    total, cheap = fvcore_flops(ghost, 32)["paper"], cheap_flops(ghost, 32)
    assert cheap == 2_322_432
    assert round((total - cheap) / 1e6) == 63  # the paper's 63M without the cheap depthwise ops


def test_torchvision_resnet18_keeps_shapes_and_every_layer_output():
    model = torchvision.models.resnet18(weights=None).eval()
    ghost = ghostify(model, 2, 3).eval()
    assert count_ghostified(ghost) == 19  # 20 convs, stem kept
    assert isinstance(ghost.conv1, nn.Conv2d)
    outs = {}
    for name, m in (("orig", model), ("ghost", ghost)):
        hooks = [getattr(m, f"layer{i}").register_forward_hook(
            lambda mod, i_, o, n=name, k=i: outs.setdefault(n, {}).__setitem__(k, o.shape))
            for i in range(1, 5)]
        with torch.no_grad():
            m(torch.randn(1, 3, 64, 64))
        for h in hooks:
            h.remove()
    assert outs["orig"] == outs["ghost"]
    ratio = fvcore_flops(model, 224)["paper"] / fvcore_flops(ghost, 224)["paper"]
    assert 1.8 < ratio < 2.0
    assert model.conv1.weight.shape == ghost.conv1.weight.shape  # original left untouched


def test_ghostify_options():
    model = vgg16_cifar()
    assert count_ghostified(ghostify(model, keep_stem=False)) == 13
    # stem kept; features.3 and features.1* (10, 14, 17) kept too: 13 - 1 - 4 = 8
    assert count_ghostified(ghostify(model, keep=["features.3", "features.1*"])) == 8
    g = ghostify(model, 4, 5).features[3]
    assert isinstance(g, GhostModule)
    assert g.primary_conv[0].out_channels == 16 and g.cheap_operation[0].kernel_size == (5, 5)
    dw = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3, groups=8))
    assert count_ghostified(ghostify(dw, keep_stem=False)) == 1  # depthwise kept
    with pytest.raises(ConfigError, match="ratio=1"):
        ghostify(model, 1)
    with pytest.raises(ConfigError, match="cheap_kernel=2"):
        ghostify(model, 2, 2)


@pytest.mark.parametrize("extra", [{}, {"ema": 0.9, "mixup": 0.4, "cutmix": 1.0, "cutout": 4}],
                         ids=["plain", "ema-mixing-cutout"])
def test_train_resume_equals_an_uninterrupted_run(tmp_path, extra):
    data = load_data("synthetic", resolution=16, train_subset=96, val_size=40, progress=False)
    spec = ModelSpec(config=reference_config(0.3, num_classes=10, resolution=16,
                                             stem_stride=1).to_dict())
    recipe = Recipe(epochs=3, batch_size=32, schedule="cosine", **extra)
    straight = train_full(spec, data, recipe, tmp_path / "a", seed=1, log=lambda m: None)

    def stop_after_first_epoch(message: str) -> None:
        if message.startswith("epoch 1/"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_full(spec, data, recipe, tmp_path / "b", seed=1, log=stop_after_first_epoch)
    assert torch.load(tmp_path / "b" / "last.pt", weights_only=False)["epoch"] == 1
    messages = []
    resumed = train_full(spec, data, recipe, tmp_path / "b", seed=1, log=messages.append)
    assert messages[0].startswith("resuming from") and len(messages) == 3
    assert [h["val_acc"] for h in resumed["history"]] == [h["val_acc"] for h in
                                                         straight["history"]]
    assert [h["loss"] for h in resumed["history"]] == [h["loss"] for h in straight["history"]]
    assert resumed["test_acc"] == straight["test_acc"]
    record = json.loads((tmp_path / "b" / "record.json").read_text())
    assert record["test_acc"] == resumed["test_acc"] and len(record["history"]) == 3
    assert record["preprocessing"] == data.preprocessing()
    assert record["preprocessing"]["input_size"] == [3, data.resolution, data.resolution]
    with pytest.raises(ConfigError, match="written for another model or recipe"):
        train_full(spec, data, Recipe(epochs=4, batch_size=32), tmp_path / "b", seed=1)
    with pytest.raises(ConfigError, match="written by a run with another seed; use a new"):
        train_full(spec, data, recipe, tmp_path / "b", seed=2)
    other = load_data("synthetic", resolution=16, train_subset=96, val_size=40, seed=5,
                      progress=False)
    with pytest.raises(ConfigError, match="another data content"):
        train_full(spec, other, recipe, tmp_path / "b", seed=1)


def test_init_from_a_timm_checkpoint(tmp_path):
    timm = pytest.importorskip("timm", reason="timm (a test extra) makes the checkpoint")
    path = tmp_path / "ghostnet_050.pth"
    torch.save(timm.create_model("ghostnet_050", pretrained=False).state_dict(), path)
    model = build_model(reference_config(0.5, num_classes=10))
    assert load_init(model, path) == ["classifier.weight", "classifier.bias"]
    same = build_model(reference_config(0.5))
    assert load_init(same, path) == []
    torch.testing.assert_close(same.state_dict()["conv_stem.weight"],
                               torch.load(path)["conv_stem.weight"])
    with pytest.raises(ConfigError, match="does not fit this model"):
        load_init(build_model(reference_config(1.0)), path)


def test_onnx_round_trip(tmp_path):
    pytest.importorskip("onnxruntime", reason="onnxruntime (a test extra) runs the export")
    from ghostsearch.deploy import check_onnx, export_onnx, onnx_latency

    model = build_model(reference_config(0.5, num_classes=10, resolution=32, stem_stride=1))
    path = export_onnx(model, tmp_path / "m.onnx", 32)
    assert check_onnx(model, path, 32, batch=3) < 1e-4  # dynamic batch
    lat = onnx_latency(path, 32, runs=5, warmup=1)
    assert 0 < lat["median_ms"] <= lat["p90_ms"] and lat["threads"] == 1
    ghost = ghostify(resnet56_cifar(), 2, 3)
    assert check_onnx(ghost, export_onnx(ghost, tmp_path / "g.onnx", 32), 32) < 1e-4


def test_onnx_file_carries_the_preprocessing(tmp_path):
    pytest.importorskip("onnxruntime", reason="onnxruntime (a test extra) runs the export")
    from ghostsearch.deploy import export_onnx, onnx_preprocessing

    pre = load_data("synthetic", resolution=16).preprocessing()
    model = build_model(reference_config(0.5, num_classes=10, resolution=16, stem_stride=1))
    path = export_onnx(model, tmp_path / "m.onnx", 16, preprocessing=pre)
    assert onnx_preprocessing(path) == pre
    assert onnx_preprocessing(export_onnx(model, tmp_path / "bare.onnx", 16)) is None


@pytest.mark.slow
def test_deploy_reports_float32_and_int8_latency_and_accuracy(tmp_path):
    """Deployed with --int8 and --data: both files are timed and scored on the test split; the
    float32 file scores what the PyTorch model scores on the same images."""
    pytest.importorskip("onnxruntime", reason="onnxruntime (a test extra) runs the export")
    from ghostsearch.train.data import load_data
    from ghostsearch.train.loop import eval_loader, evaluate

    root = Path(__file__).resolve().parent.parent
    cfg = reference_config(0.5, num_classes=10, resolution=16, stem_stride=1)
    (tmp_path / "arch.json").write_text(json.dumps(cfg.to_dict()))
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    data = load_data("synthetic", resolution=16)
    expected = evaluate(model, eval_loader(data, data.test, torch.device("cpu")), amp=False)
    r = subprocess.run(
        [sys.executable, str(root / "scripts" / "deploy.py"), "--config", "arch.json",
         "--checkpoint", "weights.pt", "--onnx", "m.onnx", "--int8", "--data", "synthetic",
         "--calibration", "64", "--runs", "5"], cwd=tmp_path, capture_output=True, text=True,
        timeout=600)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["int8"]["onnx"].endswith("m-int8.onnx") and (tmp_path / "m-int8.onnx").exists()
    assert out["int8"]["calibration_images"] == 64
    assert out["int8"]["onnxruntime_cpu_latency"]["median_ms"] > 0
    acc = out["test_accuracy"]
    assert acc["images"] == 200
    assert acc["float32"] == pytest.approx(expected, abs=0.5)  # one image of 200 at most
    assert acc["int8_drop_points"] == pytest.approx(acc["float32"] - acc["int8"])
    refused = subprocess.run(
        [sys.executable, str(root / "scripts" / "deploy.py"), "--config", "arch.json",
         "--onnx", "x.onnx", "--int8"], cwd=tmp_path, capture_output=True, text=True)
    assert refused.returncode == 2
    assert refused.stderr.strip().endswith(
        "--int8 calibrates on training images: add --data and --data-dir")


def test_deploy_builds_the_model_a_train_checkpoint_was_trained_as(tmp_path):
    """`ghostsearch train` adapts a searched config to its data (classes, input size, stem);
    deploying its checkpoint with the searched config (224 px, 1000 classes) used to fail with
    "does not fit this model". The checkpoint's spec now decides, and stderr says so."""
    pytest.importorskip("onnxruntime", reason="onnxruntime (a test extra) runs the export")
    root = Path(__file__).resolve().parent.parent
    searched = reference_config(0.5)
    trained = reference_config(0.5, num_classes=10, resolution=16, stem_stride=1)
    (tmp_path / "best_arch.json").write_text(json.dumps(searched.to_dict()))
    torch.save({"model": build_model(trained).state_dict(), "epoch": 3,
                "spec": {"config": trained.to_dict(), "num_classes": 10}}, tmp_path / "last.pt")
    r = subprocess.run(
        [sys.executable, str(root / "scripts" / "deploy.py"), "--config", "best_arch.json",
         "--checkpoint", "last.pt", "--onnx", "m.onnx", "--runs", "2"], cwd=tmp_path,
        capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["resolution"] == 16
    assert ("note: deploying the config last.pt was trained with (16 px, 10 classes, stem stride "
            "1), not best_arch.json's (224 px, 1000 classes)") in r.stderr


@pytest.mark.parametrize("command", [["deploy.py", "--model", "resnet56", "--onnx", "x.onnx"],
                                     ["train.py", "--model", "resnet56", "--data", "synthetic",
                                      "--onnx", "x.onnx"]])
def test_onnx_without_the_deploy_extra_names_it(tmp_path, command):
    """With onnx, onnxscript and onnxruntime missing (blocked on import), the commands stop
    at once with one line naming the extra; train.py before any training."""
    blocker = tmp_path / "sitecustomize.py"
    blocker.write_text("import sys\nfor m in ('onnx', 'onnxscript', 'onnxruntime'):\n"
                       "    sys.modules[m] = None\n")
    env = {**__import__("os").environ, "PYTHONPATH": str(tmp_path)}
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / command[0]), *command[1:]],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == ("error: ONNX export needs onnx, which is not installed: pip "
                                "install 'ghostsearch[deploy]'")
    assert not (tmp_path / "runs").exists()


def test_compress_script_prints_the_paper_comparison():
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "compress.py")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "313.46 -> 158.70" in r.stdout and "125.49 -> 65.29" in r.stdout
    assert "313M -> 158M" in r.stdout
