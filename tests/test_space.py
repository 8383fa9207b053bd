from __future__ import annotations

import copy

import optuna
import pytest
import yaml

from ghostsearch import ConfigError, analytic_counts, reference_config
from ghostsearch.spaces.space import load_space, shipped_spaces, space_from_dict

SHIPPED = sorted(shipped_spaces())


def test_shipped_spaces():
    assert {"ghostnet", "ghostnet_cifar"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
@pytest.mark.parametrize("width", [0.5, 1.0, 1.3])
def test_reference_is_a_point_of_every_shipped_space(name, width):
    space = load_space(name)
    params = space.reference_params(width)
    assert space.contains(params)
    d = space.deployment
    expected = reference_config(width, num_classes=d.num_classes, resolution=d.resolution,
                                stem_stride=d.stem_stride, dropout=d.dropout)
    assert space.build_config(params) == expected


def test_default_space_targets_the_paper_deployment():
    space = load_space("ghostnet")
    assert (space.deployment.resolution, space.deployment.num_classes) == (224, 1000)
    assert load_space("ghostnet_cifar").deployment.resolution == 32


def test_sampled_architectures_stay_inside_the_space():
    space = load_space("ghostnet")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(200):
        trial = study.ask()
        cfg = space.suggest(trial)
        assert space.contains(trial.params)
        assert space.build_config(trial.params) == cfg
        depths = [trial.params[f"stage{i}.depth"] for i in range(1, 7)]
        assert len(cfg.blocks) == sum(depths)
        for b in cfg.blocks:
            assert b.ghost_ratio in (2, 3, 4) and b.cheap_kernel in (1, 3, 5)
        study.tell(trial, 0.0)


def test_fixed_trial_builds_the_reference():
    space = load_space("ghostnet")
    cfg = space.suggest(optuna.trial.FixedTrial(space.reference_params(1.0)))
    assert cfg == reference_config(1.0)


def test_smallest_point_is_cheapest_of_random_samples():
    space = load_space("ghostnet")
    low = analytic_counts(space.build_config(space.smallest_params())).flops
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(100):
        t = study.ask()
        assert analytic_counts(space.suggest(t)).flops >= low
        study.tell(t, 0.0)


def _raw(name: str = "ghostnet") -> dict:
    return yaml.safe_load(shipped_spaces()[name].read_text())


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d.update(colour="red"), "unknown key 'colour'"),
        (lambda d: d["stages"].update(stage7={"depth": [1]}), "unknown key 'stages.stage7'"),
        (lambda d: d["stages"]["stage2"].update(dilation=[1]),
         "unknown key 'stages.stage2.dilation'"),
        (lambda d: d["defaults"].update(ghost_ratio=[]),
         "defaults.ghost_ratio: empty choice list"),
        (lambda d: d["stages"]["stage3"].update(depth=[]), "stages.stage3.depth: empty choice"),
        (lambda d: d["stages"]["stage2"].update(kernel=[3, 4]),
         "stages.stage2.kernel: choice refused (kernel=4: must be odd"),
        (lambda d: d["defaults"].update(ghost_ratio=[1, 2]),
         "defaults.ghost_ratio: choice refused (ghost_ratio=1: must be >= 2)"),
        (lambda d: d["defaults"].update(cheap_kernel=[2]),
         "defaults.cheap_kernel: choice refused (cheap_kernel=2: must be odd"),
        (lambda d: d["defaults"].update(se=["maybe"]), "defaults.se: choice refused"),
        (lambda d: d["defaults"].update(expansion=[0]), "defaults.expansion: choice refused"),
        (lambda d: d["stages"]["stage4"].update(depth=[0]), "stages.stage4.depth: choice refused"),
        (lambda d: d.update(width=[]), "width: empty choice list"),
        (lambda d: d.update(width=[0.5, -1]), "width: choice -1 refused"),
        (lambda d: d["deployment"].update(resolution=0), "deployment.resolution=0"),
        (lambda d: d["deployment"].update(size=5), "unknown key 'deployment.size'"),
        (lambda d: d.pop("width"), "missing key 'width'"),
        (lambda d: d.pop("defaults"), "missing key 'stages.stage1.ghost_ratio'"),
    ],
)
def test_bad_space_refused_naming_the_key(edit, message):
    data = copy.deepcopy(_raw())
    edit(data)
    with pytest.raises(ConfigError) as e:
        space_from_dict(data, "myspace")
    assert message in str(e.value)
    assert str(e.value).startswith("myspace: ") and "\n" not in str(e.value)


def test_load_space_errors(tmp_path):
    with pytest.raises(ConfigError, match="no such file .*shipped spaces: .*ghostnet"):
        load_space("nonexistent")
    bad = tmp_path / "bad.yaml"
    bad.write_text("width: [1.0\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_space(bad)
    good = tmp_path / "mine.yaml"
    good.write_text(shipped_spaces()["ghostnet"].read_text())
    assert load_space(good).name == "ghostnet"


def test_the_shallow_space_is_the_default_one_cut_at_the_papers_depths():
    """Same choices as `ghostnet` but no stage deeper than GhostNet's (1, 2, 2, 4, 2, 5), so
    its deepest point is the reference at every width."""
    default, shallow = load_space("ghostnet"), load_space("ghostnet_shallow")
    assert shallow.deployment == default.deployment
    ref = default.reference_params(1.0)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(100):
        trial = study.ask()
        shallow.suggest(trial)
        params = trial.params
        assert default.contains(params)
        assert all(params[f"stage{i}.depth"] <= ref[f"stage{i}.depth"] for i in range(1, 7))
        study.tell(trial, 0.0)
    deepest = {**ref, "width": 1.6}
    assert shallow.contains(deepest)
    assert not shallow.contains({**deepest, "stage6.depth": 6})
