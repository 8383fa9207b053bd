"""timm's model interface on built models, the timm registry entry, and the detection
backbone: the checks timm's own test suite applies, on the reference and random points of the
space, at small inputs so CI stays fast."""

from __future__ import annotations

import random

import pytest
import torch
from torch import nn

from ghostsearch import ConfigError, backbone, build_model, reference_config, save_config
from ghostsearch.spaces.space import load_space

timm = pytest.importorskip("timm", reason="timm (a test extra) is what the interface is for")


def configs():
    space = load_space("ghostnet_cifar")
    rng = random.Random(0)
    points = [space.build_config(space.random_params(rng)) for _ in range(2)]
    return [reference_config(0.5, num_classes=10, resolution=32, stem_stride=1), *points]


@pytest.fixture(params=range(3), ids=["reference-0.5x", "random-1", "random-2"])
def cfg(request):
    return configs()[request.param]


def test_forward_backward_and_every_parameter_gets_a_gradient(cfg):
    model = build_model(cfg).train()
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, cfg.num_classes) and model.num_classes == cfg.num_classes
    out.mean().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_features_head_and_pre_logits_are_consistent(cfg):
    model = build_model(cfg).eval()
    x = torch.randn(2, 3, 32, 32)
    feats = model.forward_features(x)
    assert feats.shape[1] == model.num_features == cfg.head_channels
    pre = model.forward_head(feats, pre_logits=True)
    assert pre.shape == (2, model.head_hidden_size)
    torch.testing.assert_close(model.forward_head(feats), model(x))
    torch.testing.assert_close(model.get_classifier()(pre), model(x))


def test_reset_classifier_and_pooled_features(cfg):
    model = build_model(cfg)
    model.reset_classifier(7)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7) and model.num_classes == 7
    assert model.config.num_classes == 7 and model.pretrained_cfg["num_classes"] == 7
    model.reset_classifier(0)
    assert isinstance(model.get_classifier(), nn.Identity)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, model.head_hidden_size)
    assert build_model(reference_config(0.5, num_classes=0)).num_classes == 0


def test_feature_info_matches_the_features(cfg):
    model = timm.create_model("ghostsearch_arch", arch=cfg, features_only=True,
                              out_indices=tuple(range(len(build_model(cfg).feature_info))))
    feats = model(torch.randn(1, 3, 32, 32))
    assert [f.shape[1] for f in feats] == model.feature_info.channels()
    assert [32 // f.shape[-1] for f in feats] == model.feature_info.reduction()


def test_reference_feature_levels():
    info = build_model(reference_config(1.0)).feature_info
    assert [(f["num_chs"], f["reduction"], f["module"]) for f in info] == [
        (16, 2, "blocks.0"), (24, 4, "blocks.2"), (40, 8, "blocks.4"), (112, 16, "blocks.6"),
        (960, 32, "blocks.9")]


def test_fx_trace_and_torchscript(cfg):
    model = build_model(cfg).eval()
    x = torch.randn(1, 3, 32, 32)
    traced = torch.fx.symbolic_trace(model)
    torch.testing.assert_close(traced(x), model(x))
    scripted = torch.jit.script(model)
    torch.testing.assert_close(scripted(x), model(x))


def test_pretrained_cfg_comes_from_the_exported_preprocessing(tmp_path):
    cfg = reference_config(0.5, num_classes=10, resolution=32, stem_stride=1)
    pre = {"input_size": [3, 32, 32], "mean": [0.49, 0.48, 0.45], "std": [0.25, 0.24, 0.26],
           "interpolation": "bilinear", "crop_pct": 1.0, "num_classes": 10,
           "classes": [f"c{i}" for i in range(10)]}
    path = save_config(cfg, tmp_path / "best_arch.json", metadata={"preprocessing": pre})
    model = timm.create_model("ghostsearch_arch", arch=str(path))
    pc = model.pretrained_cfg
    assert pc["input_size"] == (3, 32, 32) and pc["mean"] == (0.49, 0.48, 0.45)
    assert pc["crop_pct"] == 1.0 and pc["num_classes"] == 10 and pc["first_conv"] == "conv_stem"
    assert pc["classifier"] == "classifier" and pc["label_names"][0] == "c0"
    data_cfg = timm.data.resolve_data_config({}, model=model)
    assert data_cfg["mean"] == (0.49, 0.48, 0.45) and data_cfg["input_size"] == (3, 32, 32)
    assert timm.create_model("ghostsearch_arch", arch=str(path), num_classes=4)(
        torch.randn(1, 3, 32, 32)).shape == (1, 4)


def test_reference_names_and_local_checkpoints_through_timm(tmp_path):
    ref = timm.create_model("ghostnet_050")
    path = tmp_path / "ghostnet_050.pth"
    torch.save(ref.state_dict(), path)
    ours = timm.create_model("ghostsearch_arch", arch="ghostnet_050", pretrained=True,
                             pretrained_cfg_overlay=dict(file=str(path)))
    ref.eval(), ours.eval()
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(ours(x), ref(x))
    with pytest.raises(ConfigError, match="no weights to download"):
        timm.create_model("ghostsearch_arch", arch="ghostnet_050", pretrained=True)


@pytest.mark.parametrize("arch, message", [
    (None, "ghostsearch_arch needs arch=: a config file or best_arch.json"),
    ("nope.json", "arch='nope.json': no such file"),
    ("ghostnet_999", "arch='ghostnet_999': no such file"),
])
def test_missing_or_invalid_arch_is_one_clear_error(arch, message):
    with pytest.raises(ConfigError, match=message):
        timm.create_model("ghostsearch_arch", arch=arch)


def test_a_bad_config_file_is_one_clear_error(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"stem_channels": 16}')
    with pytest.raises(ConfigError, match="bad.json: stages: missing required key"):
        timm.create_model("ghostsearch_arch", arch=str(bad))


def test_backbone_levels_and_channels():
    cfg = reference_config(0.5)
    bb = backbone(cfg, out_indices=(1, 2, 3, 4))
    feats = bb(torch.randn(1, 3, 128, 128))
    assert list(feats) == ["0", "1", "2", "3"] and bb.channels == [12, 20, 56, 480]
    assert [f.shape[1] for f in feats.values()] == bb.channels
    assert [128 // f.shape[-1] for f in feats.values()] == [4, 8, 16, 32]
    with pytest.raises(ConfigError, match=r"out_indices=\(7,\): choose from 0..4"):
        backbone(cfg, out_indices=(7,))


def test_fasterrcnn_trains_one_step_on_the_backbone():
    from torchvision.models.detection import FasterRCNN

    torch.manual_seed(0)
    bb = backbone(reference_config(0.5), out_indices=(1, 2, 3, 4), fpn_channels=64)
    model = FasterRCNN(bb, num_classes=3, min_size=128, max_size=128).train()
    images = [torch.rand(3, 128, 128), torch.rand(3, 128, 128)]
    targets = [{"boxes": torch.tensor([[10.0, 20.0, 60.0, 90.0]]), "labels": torch.tensor([1])},
               {"boxes": torch.tensor([[30.0, 30.0, 100.0, 110.0], [5.0, 5.0, 40.0, 40.0]]),
                "labels": torch.tensor([2, 1])}]
    losses = model(images, targets)
    loss = sum(losses.values())
    assert torch.isfinite(loss)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    loss.backward()
    opt.step()
    assert bb.body.conv_stem.weight.grad is not None


@pytest.mark.parametrize("res,stem_stride", [(224, 2), (32, 1), (40, 2)])
def test_pretrained_cfg_pool_size_is_the_last_feature_map(res, stem_stride):
    import torch

    from ghostsearch import build_model, reference_config

    model = build_model(reference_config(0.5, resolution=res, stem_stride=stem_stride)).eval()
    features = model.forward_features(torch.zeros(1, 3, res, res))
    assert model.default_cfg["pool_size"] == tuple(features.shape[-2:])
