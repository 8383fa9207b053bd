from __future__ import annotations

import random

import pytest
import torch
from conftest import random_config

from ghostsearch import analytic_counts, build_model, count_flops, count_params, reference_config
from ghostsearch.arch.counting import COUNTERS, fvcore_flops, thop_flops

# Paper-convention FLOPs of timm's ghostnet_050/100/130 at 224x224 (README table)
REFERENCE_MFLOPS = {0.5: 42.3, 1.0: 141.2, 1.3: 227.0}
EXACT_FLOPS = {0.5: 42_328_152, 1.0: 141_150_512, 1.3: 227_003_256}


@pytest.fixture(scope="module")
def reference_models():
    return {w: build_model(reference_config(w)) for w in REFERENCE_MFLOPS}


@pytest.mark.parametrize("counter", COUNTERS)
@pytest.mark.parametrize("width", sorted(REFERENCE_MFLOPS))
def test_reference_flops_match_the_paper_convention(reference_models, width, counter):
    flops = count_flops(reference_models[width], counter=counter)
    assert abs(flops / 1e6 - REFERENCE_MFLOPS[width]) / REFERENCE_MFLOPS[width] < 0.005
    assert flops == EXACT_FLOPS[width]


@pytest.mark.parametrize("width", sorted(REFERENCE_MFLOPS))
def test_totals_count_more_than_the_paper_convention(reference_models, width):
    fv = fvcore_flops(reference_models[width])
    th = thop_flops(reference_models[width])
    assert fv["paper"] == th["paper"] == EXACT_FLOPS[width]
    # fvcore adds BN and pooling; thop adds more: what the README table shows side by side
    assert EXACT_FLOPS[width] < fv["total"] < th["total"]
    assert fv["conv"] + fv["linear"] == fv["paper"]


def test_analytic_equals_fvcore_and_thop_on_50_random_configs():
    rng = random.Random(3)
    for i in range(50):
        cfg = random_config(rng)
        model = build_model(cfg)
        counts = analytic_counts(cfg)
        fv = count_flops(model, counter="fvcore")
        assert counts.flops == fv, f"config {i}: {cfg.short()}"
        assert counts.params == count_params(model)
        if i % 5 == 0:
            assert count_flops(model, counter="thop") == fv


@pytest.mark.parametrize("resolution", [32, 33, 100, 224])
def test_resolution_override(resolution):
    cfg = reference_config(0.5, num_classes=10, resolution=64)
    model = build_model(cfg)
    assert count_flops(cfg, resolution, counter="analytic") == count_flops(model, resolution)
    # the default is the config's own deployment resolution
    assert count_flops(model) == count_flops(cfg, 64, counter="analytic")


def test_counting_keeps_the_model_mode():
    model = build_model(reference_config(0.5, resolution=32))
    model.train()
    count_flops(model)
    assert model.training
    assert all(p.grad is None for p in model.parameters())


def test_count_flops_errors():
    with pytest.raises(ValueError, match="counter='flop'"):
        count_flops(reference_config(0.5), counter="flop")
    with pytest.raises(TypeError, match="analytic counter needs a NetConfig"):
        count_flops(torch.nn.Conv2d(3, 3, 1), counter="analytic")
    with pytest.raises(TypeError, match="expected a NetConfig"):
        count_params("ghostnet")  # type: ignore[arg-type]


def test_plain_module_counts_at_224():
    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1, bias=False))
    assert count_flops(conv) == 8 * 3 * 9 * 224 * 224
