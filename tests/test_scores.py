"""Each training-free score against a value worked out by hand on a tiny network."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from ghostsearch import ConfigError, analytic_counts, reference_config
from ghostsearch.search.scores import SCORE_NAMES, score_architecture, score_model

A = 1 / (1 + math.e)  # softmax of logits (1, 0) puts 1 - A on the first class


def relu_net() -> nn.Module:
    """Flatten -> Linear(3, 2, no bias) with W = [[1, 0, -1], [0, 2, 1]] -> ReLU."""
    lin = nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 0.0, -1.0], [0.0, 2.0, 1.0]]))
    return nn.Sequential(nn.Flatten(), lin, nn.ReLU())


def images(*rows: list[float]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32).reshape(len(rows), 3, 1, 1)


def test_synflow_by_hand():
    # |W| = [[1, 0, 1], [0, 2, 1]], all-ones input: both units active, dR/dW = 1 everywhere,
    # so the score is the sum of |W| = 5
    net = relu_net()
    assert score_model(net, "synflow", images([0, 0, 0]), torch.tensor([0])) == 5.0
    assert net[1].weight[0, 2] == -1.0  # the caller's model is not touched
    # BatchNorm is removed, not applied: the same network with a BN gives the same score
    with_bn = nn.Sequential(nn.Flatten(), relu_net()[1], nn.Unflatten(1, (2, 1, 1)),
                            nn.BatchNorm2d(2), nn.ReLU())
    with torch.no_grad():
        with_bn[3].weight.fill_(7.0)
    assert score_model(with_bn, "synflow", images([0, 0, 0]), torch.tensor([0])) == 5.0


def test_naswot_by_hand():
    # codes of the ReLU: x1 -> Wx = (1, 0): (1, 0); x2 -> (-1, 1): (0, 1); x3 -> (1, 3): (1, 1)
    # K = [[2, 0, 1], [0, 2, 1], [1, 1, 2]], det K = 4
    x = images([1, 0, 0], [0, 0, 1], [2, 1, 1])
    got = score_model(relu_net(), "naswot", x, torch.tensor([0, 1, 0]))
    assert got == pytest.approx(math.log(4))


def test_snip_and_grad_norm_by_hand():
    # x1 = (1, 0, 0), label 0: logits (1, 0), dL/dz = (-A, A), only unit 0 active:
    # dL/dW = [[-A, 0, 0], [0, 0, 0]]; x2 = (0, 0, 1), label 1: logits (0, 1), only unit 1
    # active: [[0, 0, 0], [0, 0, -A]]; the batch mean halves both
    x, y = images([1, 0, 0], [0, 0, 1]), torch.tensor([0, 1])
    assert score_model(relu_net(), "grad_norm", x, y) == pytest.approx(A / math.sqrt(2))
    assert score_model(relu_net(), "snip", x, y) == pytest.approx(A)  # |1 * A/2| + |1 * A/2|


def test_zico_by_hand():
    # the two halves give g1 = [[-A, 0, 0], 0] and g2 = [0, [0, 0, -A]]: on the two non-zero
    # weights mean|g| = A/2 and std = A/sqrt(2); one layer: log(2 * (A/2) / (A/sqrt(2)))
    x, y = images([1, 0, 0], [0, 0, 1]), torch.tensor([0, 1])
    assert score_model(relu_net(), "zico", x, y) == pytest.approx(math.log(math.sqrt(2)))
    with pytest.raises(ConfigError, match="zico needs at least 2 images"):
        score_model(relu_net(), "zico", x[:1], y[:1])


def test_jacob_cov_by_hand():
    # d(sum of outputs)/dx = W^T mask: x1 (1, 0, 0) -> (1, 0, -1); x2 (0, 0, 1) -> (0, 2, 1);
    # x3 (2, 1, 1) -> both units: (1, 2, 0)
    x = images([1, 0, 0], [0, 0, 1], [2, 1, 1])
    jac = np.array([[1, 0, -1], [0, 2, 1], [1, 2, 0]], dtype=float)
    v = np.linalg.eigvalsh(np.corrcoef(jac))
    expected = -np.sum(np.log(v + 1e-5) + 1 / (v + 1e-5))
    got = score_model(relu_net(), "jacob_cov", x, torch.tensor([0, 1, 0]))
    assert got == pytest.approx(expected, rel=1e-9)


def test_meco_by_hand():
    # a 1x1 conv with identity weights passes the first image's channels (1, 2, 3, 4) and
    # (1, 0, 1, 1) through: their correlation r = 0.5 / sqrt(5 * 0.75), smallest eigenvalue
    # 1 - r; the reference hooks every module, so the Sequential (same output) counts it twice;
    # the second image is not used
    conv = nn.Conv2d(2, 2, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.eye(2).reshape(2, 2, 1, 1))
    first = torch.tensor([[1.0, 2, 3, 4], [1, 0, 1, 1]]).reshape(2, 2, 2)
    x = torch.stack([first, torch.randn(2, 2, 2)])
    r = 0.5 / math.sqrt(5 * 0.75)
    got = score_model(nn.Sequential(conv), "meco", x, torch.tensor([0, 1]))
    assert got == pytest.approx(2 * (1 - r))
    # more channels than positions: singular, smallest eigenvalue 0 (not computed)
    wide = nn.Sequential(nn.Conv2d(2, 5, 1))
    assert score_model(wide, "meco", x, torch.tensor([0, 1])) == 0.0
    # one channel: the 1x1 correlation matrix [1], eigenvalue 1 (Sequential and conv: twice)
    single = nn.Sequential(nn.Conv2d(2, 1, 1))
    assert score_model(single, "meco", x, torch.tensor([0, 1])) == 2.0


def test_architecture_scores_are_deterministic_for_a_seed():
    cfg = reference_config(0.3, num_classes=10, resolution=16, stem_stride=1)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(8, 3, 16, 16, generator=g), torch.randint(0, 10, (8,), generator=g)
    for name in SCORE_NAMES:
        a = score_architecture(cfg, name, x, y, seed=3)
        assert math.isfinite(a) and a == score_architecture(cfg, name, x, y, seed=3), name
    assert score_architecture(cfg, "snip", x, y, seed=3) != score_architecture(
        cfg, "snip", x, y, seed=4)
    assert score_architecture(cfg, "flops", x, y) == analytic_counts(cfg).flops
    assert score_architecture(cfg, "params", x, y) == analytic_counts(cfg).params
    with pytest.raises(ConfigError, match=r"score 'nope': unknown \(known: synflow, naswot, "
                                          r"grad_norm, snip, jacob_cov, zico, meco, params, "
                                          r"flops\)"):
        score_architecture(cfg, "nope", x, y)
