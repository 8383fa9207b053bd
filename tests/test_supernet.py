"""The supernet's weight sharing: every sub-network's outputs equal those of its extracted
copy, extracted networks count what their configs say, gradients of a sub-network land on
the first channels of the shared weights, and spaces it cannot share are refused."""

from __future__ import annotations

import random

import pytest
import torch
from test_confirm import SPACE

from ghostsearch import ConfigError, analytic_counts
from ghostsearch.arch.counting import fvcore_flops
from ghostsearch.search.space import load_space, space_from_dict
from ghostsearch.supernet import SuperNet, Task, largest_params

TASK = Task(num_classes=10, resolution=16, stem_stride=1)


@pytest.fixture(scope="module")
def tiny() -> SuperNet:
    torch.manual_seed(0)
    return SuperNet(space_from_dict(SPACE, "tiny"), TASK)


def points(space, n, seed=0):
    rng = random.Random(seed)
    return [space.random_params(rng) for _ in range(n)]


@pytest.mark.parametrize("space_name", ["tiny", "ghostnet"])
def test_a_sub_network_equals_its_extracted_copy_and_counts_as_its_config(space_name, tiny):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    sn = tiny if space_name == "tiny" else SuperNet(load_space("ghostnet"), TASK)
    sn.eval()
    x = torch.randn(2, 3, 16, 16)
    space = sn.space
    for params in [largest_params(space), space.smallest_params(), *points(space, 4)]:
        model = sn.extract(params).eval()
        cfg = sn.config(params)
        with torch.no_grad():
            assert torch.equal(sn(x, params), model(x))
        assert sum(p.numel() for p in model.parameters()) == analytic_counts(cfg).params
        assert fvcore_flops(model, 16)["paper"] == analytic_counts(cfg).flops
        assert model.config == cfg  # an ordinary model of the build_model layout


def test_gradients_of_a_sub_network_land_on_the_first_channels_of_the_shared_weights(tiny):
    sn = tiny.train()
    small = sn.space.smallest_params()
    sn.zero_grad()
    loss = sn(torch.randn(4, 3, 16, 16), small).square().mean()
    loss.backward()
    stem = sn.tensor("conv_stem.weight")
    used = sn.config(small).stem_channels
    assert stem.grad[:used].abs().sum() > 0
    assert stem.grad[used:].abs().sum() == 0  # the channels only wider networks use
    head = sn.tensor("classifier.weight")
    assert head.grad.abs().sum() > 0  # the head is shared by every sub-network
    sn.zero_grad()


def test_a_change_to_the_shared_weights_reaches_every_sub_network_that_holds_them(tiny):
    sn = tiny.eval()
    a, b = largest_params(sn.space), sn.space.smallest_params()
    with torch.no_grad():
        sn.tensor("conv_stem.weight")[0].add_(1.0)
    first_a = sn.extract(a).conv_stem.weight[0]
    first_b = sn.extract(b).conv_stem.weight[0]
    assert torch.equal(first_a, first_b)
    assert torch.equal(first_a, sn.tensor("conv_stem.weight")[0])


def test_a_smaller_kernel_is_the_centre_of_the_shared_one(tiny):
    sn = tiny
    params = dict(largest_params(sn.space))
    params.update({f"stage{i}.kernel": 3 for i in range(1, 7)})
    params.update({f"stage{i}.cheap_kernel": 1 for i in range(1, 7)})
    small_k = sn.extract(params)
    big_k = sn.extract(largest_params(sn.space))
    a, b = small_k.blocks[1][0].conv_dw.weight, big_k.blocks[1][0].conv_dw.weight
    assert a.shape[-1] == 3 and b.shape[-1] == 5
    assert torch.equal(a, b[..., 1:4, 1:4])
    ca = small_k.blocks[1][0].ghost1.cheap_operation[0].weight
    cb = big_k.blocks[1][0].ghost1.cheap_operation[0].weight
    assert ca.shape[-1] == 1 and torch.equal(ca, cb[..., 1:2, 1:2])


def test_ghost_replicas_are_shared_across_ghost_ratios(tiny):
    """Replica r of intrinsic map i is the same filter at s=2 and s=4 (row i*(s-1)+r of the
    sub-network's cheap conv)."""
    sn = tiny
    params = dict(largest_params(sn.space))
    s2 = sn.extract({**params, "stage2.ghost_ratio": 2}).blocks[1][0].ghost1
    s4 = sn.extract({**params, "stage2.ghost_ratio": 4}).blocks[1][0].ghost1
    w2, w4 = s2.cheap_operation[0].weight, s4.cheap_operation[0].weight
    m4 = s4.primary_conv[0].out_channels
    for i in range(m4):
        assert torch.equal(w4[i * 3], w2[i])  # replica 0: the s=2 ghost map of map i
    assert torch.equal(s4.primary_conv[0].weight, s2.primary_conv[0].weight[:m4])


def test_a_space_with_attention_or_v3_branches_is_refused_in_one_line():
    with pytest.raises(ConfigError, match=r"offers DFC attention or GhostNetV3 branches"):
        SuperNet(load_space("ghostnet_family"), TASK)
