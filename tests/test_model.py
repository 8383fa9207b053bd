from __future__ import annotations

import random

import pytest
import torch
from conftest import REFERENCE_WIDTHS, random_config

from ghostsearch import BlockConfig, NetConfig, build_model, count_params, reference_config
from ghostsearch.arch.layers import GhostModule, make_divisible

EXACT_PARAMS = {0.5: 2_587_292, 1.0: 5_182_508, 1.3: 7_358_820}


@pytest.mark.parametrize("width", sorted(EXACT_PARAMS))
def test_reference_parameter_counts_are_exact(width):
    model = build_model(reference_config(width))
    assert sum(p.numel() for p in model.parameters()) == EXACT_PARAMS[width]


@pytest.mark.parametrize("width", sorted(REFERENCE_WIDTHS))
def test_state_dict_equals_timm_and_loads_strict(width):
    timm = pytest.importorskip("timm", reason="timm (a test extra) is needed to compare with it")
    ours = build_model(reference_config(width)).eval()
    theirs = timm.create_model(REFERENCE_WIDTHS[width], pretrained=False).eval()
    sd_ours, sd_theirs = ours.state_dict(), theirs.state_dict()
    assert list(sd_ours) == list(sd_theirs)
    assert {k: v.shape for k, v in sd_ours.items()} == {k: v.shape for k, v in sd_theirs.items()}
    ours.load_state_dict(sd_theirs, strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-5)


def test_ghost_module_is_the_paper_module():
    """m = ceil(out/s) intrinsic maps, (s-1)m ghosts by a depthwise dxd conv, first `out` kept."""
    gm = GhostModule(16, 10, ratio=3, dw_size=5).eval()
    assert gm.primary_conv[0].out_channels == 4  # ceil(10 / 3)
    cheap = gm.cheap_operation[0]
    assert (cheap.in_channels, cheap.out_channels, cheap.groups) == (4, 8, 4)
    assert cheap.kernel_size == (5, 5) and cheap.padding == (2, 2)
    x = torch.randn(1, 16, 9, 9)
    with torch.no_grad():
        intrinsic = gm.primary_conv(x)
        expected = torch.cat([intrinsic, gm.cheap_operation(intrinsic)], 1)[:, :10]
        torch.testing.assert_close(gm(x), expected)
    assert gm(x).shape == (1, 10, 9, 9)


@pytest.mark.parametrize("width", [0.5, 1.0, 1.3])
def test_forward_backward_every_parameter_gets_a_gradient(width):
    cfg = reference_config(width, num_classes=7, resolution=32, stem_stride=1)
    model = build_model(cfg)
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 7)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_random_configs_build_with_expected_shapes_and_params():
    rng = random.Random(2)
    for _ in range(20):
        cfg = random_config(rng)
        model = build_model(cfg).eval()
        x = torch.randn(1, cfg.in_channels, cfg.resolution, cfg.resolution)
        with torch.no_grad():
            assert model(x).shape == (1, cfg.num_classes)
        assert count_params(cfg) == count_params(model)
        assert model.config is cfg


def test_make_divisible_matches_the_paper_rounding():
    assert [make_divisible(v) for v in (8, 10, 14, 16 * 0.5, 960 * 1.3)] == [8, 12, 16, 8, 1248]
    assert make_divisible(1) == 4  # never below the divisor
    assert make_divisible(18.9) == 20  # nearest multiple of 4


def test_build_model_refuses_other_types():
    with pytest.raises(TypeError, match="expects a NetConfig"):
        build_model({"stem_channels": 16})  # type: ignore[arg-type]


def test_stride_one_block_with_identity_shortcut_has_no_depthwise():
    cfg = NetConfig(
        stem_channels=8,
        stages=((BlockConfig(kernel=7, expansion=16, out_channels=8),),),
        head_channels=16,
        num_classes=3,
        resolution=16,
    )
    block = build_model(cfg).blocks[0][0]
    assert block.conv_dw is None and len(block.shortcut) == 0 and block.se is None
