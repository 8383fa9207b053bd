"""GhostNetV2 (DFC attention) and GhostNetV3 (re-parameterised branches) against timm, the
fuse step, counting in the deployed form, small inputs and the family search space."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import pytest
import torch
from torch import nn

from ghostsearch import (
    BlockConfig,
    ConfigError,
    NetConfig,
    analytic_counts,
    build_model,
    count_flops,
    count_params,
    fuse,
    reference_config,
)
from ghostsearch.arch.counting import block_counts
from ghostsearch.arch.layers import dfc_pool
from ghostsearch.arch.reparam import RepGhostModule, is_fused
from ghostsearch.cli import main
from ghostsearch.spaces.space import load_space, space_from_dict

ROOT = Path(__file__).resolve().parent.parent
TIMM_NAMES = {"ghostnetv2_100": (1.0, 2), "ghostnetv2_130": (1.3, 2), "ghostnetv2_160": (1.6, 2),
              "ghostnetv3_050": (0.5, 3), "ghostnetv3_100": (1.0, 3), "ghostnetv3_130": (1.3, 3),
              "ghostnetv3_160": (1.6, 3)}
# timm 1.0.31's models measured with fvcore at 224x224, 1000 classes (V3: after
# convert_to_deploy): params and conv+linear multiply-adds
TIMM_COUNTS = {
    "ghostnetv2_100": (6_156_908, 167_050_000), "ghostnetv2_130": (8_960_404, 269_320_000),
    "ghostnetv2_160": (12_392_698, 398_610_000), "ghostnetv3_050": (2_853_176, 49_640_000),
    "ghostnetv3_100": (6_147_588, 167_050_000), "ghostnetv3_130": (8_948_296, 269_320_000),
    "ghostnetv3_160": (12_377_778, 398_610_000),
}


def _randomise_bn(model: nn.Module, seed: int = 0) -> None:
    """Non-trivial BN statistics and affine terms, so that folding them is really tested."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) - 0.5)


@pytest.fixture(scope="module")
def timm():
    return pytest.importorskip("timm", reason="timm is in the test extra: pip install -e '.[test]'")


@pytest.mark.parametrize("name", sorted(TIMM_NAMES))
def test_reference_state_dict_keys_and_shapes_equal_timm(timm, name):
    width, version = TIMM_NAMES[name]
    ours = build_model(reference_config(width, version=version)).state_dict()
    theirs = timm.create_model(name).state_dict()
    assert sorted(ours) == sorted(theirs)
    assert {k: tuple(v.shape) for k, v in ours.items()} == {
        k: tuple(v.shape) for k, v in theirs.items()}


@pytest.mark.parametrize("name", ["ghostnetv2_100", "ghostnetv3_050"])
def test_timm_weights_load_strict_and_give_identical_outputs(timm, name):
    width, version = TIMM_NAMES[name]
    torch.manual_seed(0)
    theirs = timm.create_model(name, num_classes=10)
    _randomise_bn(theirs)
    ours = build_model(reference_config(width, version=version, num_classes=10))
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), theirs.eval()(x), atol=1e-6, rtol=0)
    if version == 3:  # and the deployed forms agree too, key for key
        theirs.convert_to_deploy()
        deployed = build_model(reference_config(width, version=3, num_classes=10), fused=True)
        assert sorted(deployed.state_dict()) == sorted(theirs.state_dict())
        deployed.load_state_dict(theirs.state_dict(), strict=True)
        with torch.no_grad():
            torch.testing.assert_close(deployed.eval()(x), theirs(x), atol=1e-6, rtol=0)


def _family_points(n: int, seed: int) -> list[NetConfig]:
    """Random points of the family space with re-parameterised stages, at 32 px for speed."""
    space = load_space("ghostnet_family")
    rng, out = random.Random(seed), []
    while len(out) < n:
        cfg = space.build_config(space.random_params(rng))
        if any(b.reparam for b in cfg.blocks) and any(b.attention == "dfc" for b in cfg.blocks):
            out.append(dataclasses.replace(cfg, resolution=32, num_classes=10))
    return out


@pytest.mark.parametrize("cfg", [reference_config(1.0, version=3, num_classes=10,
                                                  resolution=64)] + _family_points(3, seed=1),
                         ids=["v3-1.0x", "family-a", "family-b", "family-c"])
def test_fused_model_equals_unfused_in_eval_mode(cfg):
    torch.manual_seed(0)
    model = build_model(cfg)
    _randomise_bn(model)
    model.eval()
    fused = fuse(model)
    assert not is_fused(model) and is_fused(fused)  # fuse copies unless inplace
    assert not any(n.endswith(("_rpr_conv", "_rpr_scale", "_rpr_skip"))
                   for n, _ in fused.named_modules())
    x = torch.randn(3, 3, cfg.resolution, cfg.resolution)
    with torch.no_grad():
        diff = (fused(x) - model(x)).abs().max().item()
    assert diff <= 1e-4
    # the deployed form is what the counters describe
    counts = analytic_counts(cfg)
    assert counts.params == sum(p.numel() for p in fused.parameters())
    assert counts.params < count_params(model)  # the training form has the branches
    assert count_flops(model) == count_flops(fused) == counts.flops


def test_identity_branch_only_where_ghost_maps_match_intrinsic_ones():
    assert RepGhostModule(8, 16, ratio=2).cheap_rpr_skip is not None
    assert RepGhostModule(8, 18, ratio=3).cheap_rpr_skip is None  # 6 intrinsic -> 12 ghost


@pytest.mark.parametrize("name", sorted(TIMM_NAMES))
def test_analytic_counts_at_224_equal_timm_measured(name):
    width, version = TIMM_NAMES[name]
    counts = analytic_counts(reference_config(width, version=version))
    params, flops = TIMM_COUNTS[name]
    assert counts.params == params
    assert round(counts.flops, -4) == flops  # timm's figures were recorded to 0.01 MFLOPs


@pytest.mark.parametrize("version", [2, 3])
@pytest.mark.parametrize("counter", ["fvcore", "thop"])
def test_analytic_equals_traced_counters(version, counter):
    cfg = reference_config(0.5, version=version, resolution=96)
    assert count_flops(cfg, counter=counter) == analytic_counts(cfg).flops


def test_dfc_counts_its_three_convs_by_hand():
    """in 8, expansion 16, 8x8 map: the 1x1 conv and both depthwise convs run on 4x4."""
    plain = BlockConfig(kernel=3, expansion=16, out_channels=8)
    dfc = dataclasses.replace(plain, attention="dfc")
    extra_flops = 8 * 16 * 16 + 2 * (16 * 5 * 16)  # 1x1 conv; 1x5 and 5x1 depthwise
    extra_params = 8 * 16 + 2 * 16 + 2 * (16 * 5 + 2 * 16)  # weights and three BNs
    assert block_counts(8, dfc, 8).flops - block_counts(8, plain, 8).flops == extra_flops
    assert block_counts(8, dfc, 8).params - block_counts(8, plain, 8).params == extra_params
    # on a 1x1 map nothing is pooled: the convs run on 1x1
    assert (block_counts(8, dfc, 1).flops - block_counts(8, plain, 1).flops
            == 8 * 16 + 2 * 16 * 5)


def test_dfc_pooling_skips_maps_smaller_than_two():
    assert dfc_pool(torch.ones(1, 2, 1, 1)).shape == (1, 2, 1, 1)
    assert dfc_pool(torch.ones(1, 2, 1, 6)).shape == (1, 2, 1, 6)
    assert dfc_pool(torch.ones(1, 2, 7, 7)).shape == (1, 2, 3, 3)  # as avg_pool2d(2, 2)


@pytest.mark.parametrize("version", [2, 3])
@pytest.mark.parametrize("stem_stride", [1, 2])
def test_small_inputs_run_trace_and_script(version, stem_stride):
    """32 px: the deepest maps are 2x2 with a stride-1 stem and 1x1 with the paper's stem."""
    cfg = reference_config(0.5, version=version, num_classes=10, resolution=32,
                           stem_stride=stem_stride)
    model = build_model(cfg).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        y = model(x)
        assert y.shape == (2, 10) and torch.isfinite(y).all()
        for m in (torch.fx.symbolic_trace(model), torch.jit.script(model),
                  torch.jit.script(fuse(model))):
            torch.testing.assert_close(m(x), y, atol=1e-5, rtol=0)
    assert count_flops(cfg) == analytic_counts(cfg).flops


def test_training_form_trains_every_branch():
    cfg = reference_config(0.5, version=3, num_classes=10, resolution=32, stem_stride=1)
    model = build_model(cfg)
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing


def test_block_config_fields_validate_and_round_trip():
    with pytest.raises(ConfigError, match=r"attention='se': must be one of none, dfc"):
        BlockConfig(3, 16, 16, attention="se")
    with pytest.raises(ConfigError, match=r"reparam=1: must be true or false"):
        BlockConfig(3, 16, 16, reparam=1)
    cfg = reference_config(1.0, version=3)
    assert NetConfig.from_json(cfg.to_json()) == cfg
    data = json.loads(cfg.to_json())
    data["stages"][2][0]["attention"] = "nope"
    with pytest.raises(ConfigError, match=r"^stages\[2\]\[0\]\.attention='nope'"):
        NetConfig.from_dict(data)
    assert "_dfc_rep" in cfg.short()


def test_versions_put_dfc_on_all_but_the_first_two_blocks():
    for version, reparam in ((2, False), (3, True)):
        blocks = reference_config(1.0, version=version).blocks
        assert [b.attention for b in blocks] == ["none"] * 2 + ["dfc"] * (len(blocks) - 2)
        assert {b.reparam for b in blocks} == {reparam}
    with pytest.raises(ConfigError, match="version=4"):
        reference_config(1.0, version=4)


# -- the search space -------------------------------------------------------------------------

@pytest.mark.parametrize("version", [1, 2, 3])
def test_references_are_points_of_the_family_space(version):
    space = load_space("ghostnet_family")
    for width in (0.5, 1.0, 1.3, 1.6):
        params = space.reference_params(width, version=version)
        assert space.contains(params)
        assert space.build_config(params) == reference_config(width, version=version)


def test_spaces_without_the_new_choices_are_unchanged():
    """The default space keeps its parameters and fingerprint (a ground-truth table and old
    studies refer to it) and has no V2/V3 points."""
    space = load_space("ghostnet")
    protocol = json.loads((ROOT / "results" / "ground_truth" / "protocol.json").read_text())
    assert space.fingerprint() == protocol["space_sha256"]
    assert "stage2.attention" not in space.random_params(random.Random(0))
    with pytest.raises(ConfigError, match="has no attention choices"):
        space.reference_params(1.0, version=2)


def test_family_space_draws_both_features_and_never_dfc_on_the_first_two_blocks():
    space = load_space("ghostnet_family")
    rng = random.Random(0)
    seen = set()
    for _ in range(50):
        blocks = space.build_config(space.random_params(rng)).blocks
        assert blocks[0].attention == blocks[1].attention == "none"
        seen |= {(b.attention, b.reparam) for b in blocks}
    assert seen == {("none", False), ("none", True), ("dfc", False), ("dfc", True)}


@pytest.mark.parametrize("stage, message", [
    ({"attention": ["none", "se"]},
     "stages.stage2.attention: choice refused (attention='se': must be one of none, dfc)"),
    ({"reparam": ["yes"]},
     "stages.stage2.reparam: choice refused (reparam='yes': must be true or false)"),
])
def test_bad_yaml_values_are_one_line(tmp_path, capsys, stage, message):
    text = (ROOT / "ghostsearch" / "spaces" / "ghostnet_family.yaml").read_text()
    data = __import__("yaml").safe_load(text)
    data["stages"]["stage2"].update(stage)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        space_from_dict(data)
    path = tmp_path / "bad.yaml"
    path.write_text(__import__("yaml").safe_dump(data))
    code = main(["search", "--space", str(path), "--data", "synthetic", "--trials", "1",
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and message in err
    assert not (tmp_path / "out").exists()


def test_timm_entry_builds_the_new_references(timm):
    model = timm.create_model("ghostsearch_arch", arch="ghostnetv3_050", num_classes=10)
    assert model.config == reference_config(0.5, version=3, num_classes=10)
    assert sorted(model.state_dict()) == sorted(
        timm.create_model("ghostnetv3_050", num_classes=10).state_dict())


# -- the comparison benchmark -----------------------------------------------------------------

def test_comparison_matches_v2_flops_with_a_v1_width_and_summarises_seeds(tmp_path):
    from ghostsearch.bench.compare_versions import WIDTH_GRID, matching_width, models, summarise

    v2 = analytic_counts(reference_config(1.0, version=2)).flops
    w = matching_width(v2)
    gaps = {x: abs(analytic_counts(reference_config(x)).flops - v2) for x in WIDTH_GRID}
    assert gaps[w] == min(gaps.values()) and gaps[w] < 0.05 * v2
    archs = models()
    assert [a[0] for a in archs] == ["v1-1.00x", "v2-1.00x", "v3-1.00x", f"v1-{w:.2f}x"]
    (tmp_path / "runs.csv").write_text(
        "arch_id,seed,test_acc\nv2-1.00x,0,70.0\nv2-1.00x,1,71.5\nv1-1.00x,0,69.0\n")
    table = summarise(tmp_path, archs, {"v2-1.00x": 12.5}).set_index("model")
    v2_row = table.loc["GhostNetV2 1.0x"]
    assert v2_row["seeds"] == 2 and v2_row["test acc % (mean)"] == 70.75
    assert v2_row["spread (max-min)"] == 1.5 and v2_row["MFLOPs"] == 167.05
    assert v2_row["CPU latency ms (1 thread, bs 1, 224 px)"] == 12.5
    assert table.loc["GhostNetV3 1.0x", "seeds"] == 0
    assert table.loc["GhostNetV3 1.0x", "params (deployed)"] == 6_147_588


def test_latency_table_times_the_deployed_blocks():
    from ghostsearch.latency.table import _op_modules

    cfg = reference_config(0.5, version=3, num_classes=10, resolution=32, stem_stride=1)
    blocks = [m for _, m, _, _ in _op_modules(cfg)[1:-1]]
    assert len(blocks) == len(cfg.blocks) and all(is_fused(b) for b in blocks)
    assert sum(1 for b in blocks if b.ghost1.short_conv is not None) == len(cfg.blocks) - 2
