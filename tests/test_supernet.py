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
from ghostsearch.spaces.space import load_space, space_from_dict
from ghostsearch.supernet import SuperNet, Task, largest_params

TASK = Task(num_classes=10, resolution=16, stem_stride=1)


@pytest.fixture(autouse=True)
def one_thread():
    """One thread, as a worker trains (and fast on a busy machine); restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny() -> SuperNet:
    torch.manual_seed(0)
    return SuperNet(space_from_dict(SPACE, "tiny"), TASK)


def points(space, n, seed=0):
    rng = random.Random(seed)
    return [space.random_params(rng) for _ in range(n)]


@pytest.mark.parametrize("space_name", ["tiny", "ghostnet"])
def test_a_sub_network_equals_its_extracted_copy_and_counts_as_its_config(space_name, tiny):
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


def test_training_resumes_to_the_same_weights_and_ranks_with_inherited_weights(tmp_path):
    """Two epochs straight, or one epoch, a stop, and a resume: the same weights. The
    trained supernet ranks with inherited weights after BatchNorm recalibration."""
    from ghostsearch.supernet.rank import recalibrate, supernet_accuracy
    from ghostsearch.supernet.train import Plan, load_supernet, train_supernet
    from ghostsearch.train.data import load_data
    from ghostsearch.train.recipe import Recipe

    space = space_from_dict(SPACE, "tiny")
    data = load_data("synthetic", resolution=16, train_subset=64, val_size=32, progress=False)
    plan = Plan(Recipe(epochs=2, batch_size=32), band_mflops=None, random_subnets=1)
    quiet = dict(log=lambda m: None, show_progress=False)
    straight = train_supernet(space, data, plan, tmp_path / "a", **quiet)
    assert [h["epoch"] for h in straight["history"]] == [1, 2]
    one = Plan(Recipe(epochs=2, batch_size=32), band_mflops=None, random_subnets=1)
    messages = []

    def stop_after_epoch_one(message: str) -> None:
        messages.append(message)
        if message.startswith("epoch 1/"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_supernet(space, data, one, tmp_path / "b", log=stop_after_epoch_one,
                       show_progress=False)
    resumed = train_supernet(space, data, one, tmp_path / "b", log=messages.append,
                             show_progress=False)
    assert any(m.startswith("resuming from") for m in messages)
    assert [h["loss_largest"] for h in resumed["history"]] == [
        h["loss_largest"] for h in straight["history"]]
    a, _ = load_supernet(tmp_path / "a")
    b, state = load_supernet(tmp_path / "b")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(),
                                                 b.state_dict().values(), strict=True))
    assert state["epoch"] == 2 and a.space == space
    with pytest.raises(ConfigError, match="written for another space, plan or data"):
        train_supernet(space, data, Plan(Recipe(epochs=3, batch_size=32)), tmp_path / "b",
                       **quiet)
    params = space.smallest_params()
    model = a.extract(params)
    recalibrate(model, data, images=64)
    bn = model.bn1
    assert int(bn.num_batches_tracked) == 1 and not model.training
    acc = supernet_accuracy(a, params, data, calibration=64)
    assert 0.0 <= acc <= 100.0
    assert supernet_accuracy(a, params, data, calibration=64) == acc  # deterministic


def test_a_missing_checkpoint_says_how_to_make_one(tmp_path):
    from ghostsearch.supernet.train import load_supernet

    with pytest.raises(ConfigError, match="no supernet checkpoint; train one with"):
        load_supernet(tmp_path)


def test_the_command_trains_ranks_and_exports_a_sub_network_that_trains_on(tmp_path, capsys):
    import json

    import pandas as pd
    import yaml

    from ghostsearch.arch.config import load_config
    from ghostsearch.cli import main

    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(SPACE))
    data = ["--data", "synthetic", "--train-subset", "64", "--val-size", "32",
            "--resolution", "16", "--device", "cpu"]
    sn = str(tmp_path / "sn")
    assert main(["supernet", "train", "--space", str(tmp_path / "tiny.yaml"), *data,
                 "--epochs", "1", "--batch-size", "32", "--random-subnets", "1",
                 "--out", sn]) == 0
    assert main(["supernet", "rank", "--supernet", sn, *data, "--candidates", "4",
                 "--calibration", "64", "--val-images", "16",
                 "--out", str(tmp_path / "ranked.csv")]) == 0
    ranked = pd.read_csv(tmp_path / "ranked.csv")
    assert list(ranked["rank"]) == [1, 2, 3, 4]
    assert ranked["supernet_val_acc"].is_monotonic_decreasing
    assert ranked["params"].nunique() == 4
    assert (ranked["supernet_val_acc"] % 6.25 == 0).all()  # accuracies on 16 images
    best = ranked["params"][0]
    assert main(["supernet", "export", "--supernet", sn, "--params", best,
                 "--out", str(tmp_path / "sub.json")]) == 0
    space = space_from_dict(SPACE, "tiny")
    assert load_config(tmp_path / "sub.json") == space.build_config(json.loads(best))
    assert main(["train", "--config", str(tmp_path / "sub.json"), "--init",
                 str(tmp_path / "sub.pth"), *data, "--epochs", "1", "--batch-size", "32",
                 "--out", str(tmp_path / "run")]) == 0
    assert "initialised from" in capsys.readouterr().out
    assert main(["supernet", "rank", "--supernet", str(tmp_path / "none"), *data,
                 "--out", str(tmp_path / "x.csv")]) == 2
    assert "no supernet checkpoint; train one with" in capsys.readouterr().err
    assert main(["supernet", "rank", "--supernet", sn, *data, "--val-images", "0",
                 "--out", str(tmp_path / "x.csv")]) == 2
    assert capsys.readouterr().err.startswith("error: --val-images 0: must be >= 1")
    assert main(["supernet", "train", "--space", str(tmp_path / "tiny.yaml"), *data,
                 "--band", "9:3", "--out", sn]) == 2
    assert capsys.readouterr().err.startswith("error: --band 9:3: needs 0 <= LO < HI")


def test_the_ground_truth_is_ranked_with_inherited_weights_and_cached(tmp_path, monkeypatch):
    import ghostsearch.supernet.rank as rank
    from ghostsearch.bench import gt_fidelity as gf
    from ghostsearch.bench.ground_truth import Unit, plan, write_plan
    from ghostsearch.supernet.train import Plan, train_supernet
    from ghostsearch.train.data import load_data
    from ghostsearch.train.recipe import Recipe

    space = space_from_dict(SPACE, "tiny")
    data = load_data("synthetic", resolution=16, train_subset=64, val_size=32, progress=False)
    train_supernet(space, data, Plan(Recipe(epochs=1, batch_size=32), random_subnets=0),
                   tmp_path / "sn", log=lambda m: None, show_progress=False)
    table = tmp_path / "gt"
    archs = plan(space, 9_000_000, 3, [0.5], second_seed=0)
    write_plan(table, space, archs, [Unit(a["arch_id"], 0) for a in archs], {})
    ids = [a["arch_id"] for a in archs]
    first = gf.supernet_scores(table, ids, tmp_path / "sn", data, calibration=64)
    assert sorted(first.arch_id) == sorted(ids) and first.value.between(0, 100).all()
    calls = []
    monkeypatch.setattr(rank, "supernet_accuracy", lambda *a, **k: calls.append(1) or 0.0)
    again = gf.supernet_scores(table, ids, tmp_path / "sn", data, calibration=64)
    assert calls == [] and list(again.value) == list(first.value)  # from the cache
    seen = []
    monkeypatch.setattr(rank, "supernet_accuracy",
                        lambda *a, **k: seen.append(k["val_images"]) or 50.0)
    fewer = gf.supernet_scores(table, ids, tmp_path / "sn", data, calibration=64,
                               val_images=16)  # another setting: its own rows in the cache
    assert seen == [16] * len(ids) and (fewer.value == 50.0).all()
    assert fewer.supernet.iloc[0] == first.supernet.iloc[0] + "-v16"
    (method, (values, cpu_s, kind)), = gf.supernet_methods(again).items()
    assert method.startswith("supernet (") and "-e1-c64" in method and kind == "supernet"
    assert sorted(values.index) == sorted(ids) == sorted(cpu_s.index)  # a cost per architecture
    assert (cpu_s > 0).all()


def test_a_search_prescreens_its_pool_with_the_supernet(tmp_path):
    import optuna

    from ghostsearch.search.prescreen import PRESCREEN_KEY
    from ghostsearch.search.settings import DataSpec, SearchSettings
    from ghostsearch.search.workers import run_trials
    from ghostsearch.supernet.train import Plan, train_supernet
    from ghostsearch.train.recipe import Recipe

    space = space_from_dict(SPACE, "tiny")
    spec = DataSpec("synthetic", val_size=40, train_subset=64, resolution=16)
    train_supernet(space, spec.load(progress=False), Plan(Recipe(epochs=1, batch_size=32),
                                                          random_subnets=0),
                   tmp_path / "sn", log=lambda m: None, show_progress=False)
    common = dict(study_name="s", storage=f"sqlite:///{tmp_path / 'study.db'}", space=space,
                  data=spec, protocol=Recipe(epochs=1, batch_size=32), budget_flops=9_000_000,
                  device="cpu", prescreen="supernet", pool=6, top=2, trials=2,
                  baselines=False)
    settings = SearchSettings(**common, supernet=str(tmp_path / "sn"))
    assert settings.identity()["prescreen"]["supernet"].endswith("-e1")
    study = run_trials(settings, show_progress=False)
    pool = study.user_attrs[PRESCREEN_KEY]
    assert pool["score"] == "supernet" and len(pool["pool"]) == 6
    assert pool["supernet"]["epoch"] == 1 and pool["cpu_seconds"] > 0
    picked = sorted((r for r in pool["pool"] if r["picked"]), key=lambda r: r["rank"])
    assert [r["rank"] for r in picked] == [0, 1]
    assert picked[0]["score"] >= max(r["score"] for r in pool["pool"])
    trained = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert sorted(t.user_attrs["prescreen_rank"] for t in trained) == [0, 1]
    with pytest.raises(ConfigError, match="--prescreen supernet and --supernet DIR go together"):
        SearchSettings(**common)
    other = {**SPACE, "width": [0.3, 0.5]}
    with pytest.raises(ConfigError, match="trained for space 'tiny', not this search's"):
        SearchSettings(**{**common, "space": space_from_dict(other, "tiny")},
                       supernet=str(tmp_path / "sn"))


@pytest.mark.parametrize("sampler", ["random", "tpe"])
def test_in_band_candidates_are_searched_with_inherited_weights(tiny, sampler, monkeypatch):
    import ghostsearch.supernet.rank as rank
    from ghostsearch.train.data import load_data

    data = load_data("synthetic", resolution=16, train_subset=64, val_size=32, progress=False)
    calls = []

    def fake_accuracy(sn, params, data, calibration, val_images):  # the sampler, fast
        assert val_images is None  # all the held-out images unless asked
        calls.append(params)
        return float(params["width"]) * 10 + float(params["stage4.depth"])

    monkeypatch.setattr(rank, "supernet_accuracy", fake_accuracy)
    rows = rank.search_subnets(tiny, data, 12, low_flops=2_000_000, high_flops=9_000_000,
                               sampler=sampler, seed=1)
    space = tiny.space
    cfgs = [space.build_config(r["params"]) for r in rows]
    assert len(rows) == len(set(cfgs)) == len(calls) == 12  # distinct, each evaluated once
    assert all(2.0 <= r["mflops"] <= 9.0 for r in rows)
    assert all(r["supernet_val_acc"] == fake_accuracy(None, r["params"], None, 0, None)
               for r in rows)
    with pytest.raises(ConfigError, match="choose random or tpe"):
        rank.search_subnets(tiny, data, 2, sampler="cma")
