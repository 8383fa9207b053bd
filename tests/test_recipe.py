"""Recipes as data: named recipes and users' files, strict parsing with one-line errors, the
identity that keys runs, and the knobs reaching the training (augmentation, mixing, EMA)."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
import torch

from ghostsearch.arch.reference import reference_config
from ghostsearch.bank import model_key
from ghostsearch.cli import main
from ghostsearch.errors import ConfigError
from ghostsearch.train.data import DeviceLoader, Split, load_data
from ghostsearch.train.full import ModelSpec, train_full
from ghostsearch.train.loop import mix_batch
from ghostsearch.train.recipe import (
    GROUND_TRUTH_PROTOCOL,
    Recipe,
    load_recipe,
    recipe_names,
    save_recipe,
)

# the fields of a Recipe before augmentation, EMA, precision and the rest became knobs: a run
# keyed then must keep its key
LEGACY_FIELDS = ("epochs", "batch_size", "lr", "momentum", "weight_decay", "label_smoothing",
                 "warmup", "schedule", "small_input_stem_stride")


def test_three_named_recipes_ship_and_differ():
    names = recipe_names()
    assert {"ground-truth", "full-data", "onecycle-cutout"} <= set(names)
    recipes = [load_recipe(n) for n in names]
    assert [r.name for r in recipes] == names
    assert len({json.dumps(r.identity(), sort_keys=True) for r in recipes}) == len(recipes)
    full = load_recipe("full-data")
    assert full.train_images is None and full.epochs * 48_000 >= 250_000


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
@pytest.mark.parametrize("name", ["ground-truth", "full-data", "onecycle-cutout"])
def test_round_trip_through_a_file(tmp_path, name, suffix):
    recipe = load_recipe(name)
    path = save_recipe(recipe, tmp_path / f"mine{suffix}")
    assert load_recipe(path) == recipe  # the recipe names itself, so the file's stem is unused


def test_a_file_without_a_name_is_named_after_the_file(tmp_path):
    (tmp_path / "long.yaml").write_text("epochs: 30\ncutout: 16\nmixup: 0.2\n")
    r = load_recipe(tmp_path / "long.yaml")
    assert (r.name, r.epochs, r.cutout, r.mixup) == ("long", 30, 16, 0.2)
    assert r.batch_size == Recipe().batch_size  # a missing field takes its default


def test_ground_truth_recipe_is_the_protocol_of_the_ground_truth_and_keeps_old_keys():
    assert load_recipe("ground-truth").identity() == GROUND_TRUTH_PROTOCOL.identity()
    legacy = {k: v for k, v in dataclasses.asdict(GROUND_TRUTH_PROTOCOL).items()
              if k in LEGACY_FIELDS}
    assert GROUND_TRUTH_PROTOCOL.identity() == legacy
    # a knob that is set enters the identity; the name never does
    assert "cutout" in dataclasses.replace(GROUND_TRUTH_PROTOCOL, cutout=8).identity()
    assert dataclasses.replace(GROUND_TRUTH_PROTOCOL, name="x").identity() == legacy


@pytest.mark.parametrize("text, message", [
    ("epochs: 0\n", "epochs=0: must be >= 1"),
    ("epochs: ten\n", "epochs='ten': must be an integer"),
    ("cutuot: 8\n", "unknown field 'cutuot'"),
    ("schedule: step\n", "schedule='step': choose one of onecycle, cosine, constant"),
    ("ema: 1.5\n", "ema=1.5: must be in [0, 1)"),
    ("precision: fp16\n", "precision='fp16': choose one of auto, fp32, bf16"),
    ("- 1\n- 2\n", "expected a mapping of recipe fields"),
    ("epochs: [1\n", "not readable as yaml"),
])
def test_a_bad_recipe_is_refused_in_one_line_naming_the_field(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_recipe(path)


def test_cli_refuses_a_bad_recipe_with_exit_2_and_one_line(tmp_path, capsys):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"epochs": 3, "mixup": -1}))
    code = main(["train", "--model", "resnet56", "--data", "synthetic", "--recipe", str(path),
                 "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "mixup=-1" in err[0] and "bad.json" in err[0] and "Traceback" not in err[0]
    assert not (tmp_path / "run").exists()  # refused before anything was made
    code = main(["confirm", "--study-name", "none", "--recipe", "no-such-recipe"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "neither a named recipe" in err[0]


def test_two_recipes_give_two_runs_and_two_bank_keys(tmp_path):
    data = load_data("synthetic", resolution=16, train_subset=96, val_size=40, progress=False)
    cfg = reference_config(0.3, num_classes=10, resolution=16, stem_stride=1)
    spec = ModelSpec(config=cfg.to_dict())
    a = Recipe(epochs=2, batch_size=32, schedule="cosine", name="a")
    b = dataclasses.replace(a, cutout=6, label_smoothing=0.0, ema=0.9, name="b")
    ra = train_full(spec, data, a, tmp_path / "a", seed=0, log=lambda m: None)
    rb = train_full(spec, data, b, tmp_path / "b", seed=0, log=lambda m: None)
    assert [h["loss"] for h in ra["history"]] != [h["loss"] for h in rb["history"]]
    # the recipe is stored with the unit, whole, and what ran it beside it
    stored = json.loads((tmp_path / "b" / "record.json").read_text())
    assert Recipe.from_dict(stored["recipe"]) == b
    assert stored["ran_on"]["threads"] >= 1 and stored["ran_on"]["torch"] == torch.__version__
    assert model_key(cfg, data, a, "d") != model_key(cfg, data, b, "d")
    assert model_key(cfg, data, a, "d") == model_key(cfg, data,
                                                     dataclasses.replace(a, name="z"), "d")


def test_cutout_zeroes_one_square_per_image_and_flip_can_be_turned_off():
    images = torch.full((64, 3, 16, 16), 200, dtype=torch.uint8)
    split = Split(images, torch.zeros(64, dtype=torch.int64))
    plain = DeviceLoader(split, 64, (0.0,) * 3, (1.0,) * 3, train=True, pad=0, flip=False)
    x, _ = next(iter(plain))
    assert torch.all(x == 200)  # no crop, no flip, no cutout: the images themselves
    holes = DeviceLoader(split, 64, (0.0,) * 3, (1.0,) * 3, train=True, pad=0, cutout=6)
    x, _ = next(iter(holes))
    zeroed = (x == 0).all(dim=1).flatten(1).sum(1)  # pixels zeroed in every channel
    assert int(zeroed.max()) == 36 and int(zeroed.min()) >= 9  # a 6x6 square, maybe clipped
    assert torch.all((x == 0) | (x == 200))


def test_mixup_and_cutmix_mix_two_labels_with_the_right_weight():
    x = torch.arange(8, dtype=torch.float32).view(8, 1, 1, 1).expand(8, 3, 8, 8).contiguous()
    y = torch.arange(8)
    g = torch.Generator().manual_seed(0)
    same, y1, y2, lam = mix_batch(x, y, Recipe(), g)
    assert same is x and lam == 1.0 and torch.equal(y1, y2)
    mixed, y1, y2, lam = mix_batch(x, y, Recipe(mixup=0.4), g)
    assert 0 <= lam <= 1
    expected = lam * y1.float() + (1 - lam) * y2.float()
    assert torch.allclose(mixed[:, 0, 0, 0], expected, atol=1e-5)
    cut, y1, y2, lam = mix_batch(x, y, Recipe(cutmix=1.0), g)
    from_first = (cut == y1.float().view(8, 1, 1, 1)).float().mean(dim=(1, 2, 3))
    moved = y1 != y2
    assert torch.allclose(from_first[moved], torch.full_like(from_first[moved], lam))
