from __future__ import annotations

import dataclasses
import json
import random

import pytest
from conftest import random_config

from ghostsearch import (
    BlockConfig,
    ConfigError,
    NetConfig,
    load_config,
    reference_config,
    save_config,
)


@pytest.mark.parametrize("width", [0.35, 0.5, 0.75, 1.0, 1.3, 2.0])
def test_json_and_yaml_round_trip_references(width):
    cfg = reference_config(width)
    assert NetConfig.from_json(cfg.to_json()) == cfg
    assert NetConfig.from_yaml(cfg.to_yaml()) == cfg
    assert hash(NetConfig.from_json(cfg.to_json())) == hash(cfg)


def test_json_round_trip_random_configs():
    rng = random.Random(1)
    for _ in range(50):
        cfg = random_config(rng)
        text = cfg.to_json()
        back = NetConfig.from_json(text)
        assert back == cfg
        assert back.to_json() == text  # byte-identical on the second trip


def test_save_and_load_files(tmp_path):
    cfg = reference_config(1.0, num_classes=10, resolution=32, stem_stride=1)
    for name in ("a.json", "a.yaml", "a.yml"):
        assert load_config(save_config(cfg, tmp_path / name)) == cfg
    # an exported architecture wraps the config with metadata and still loads
    path = save_config(cfg, tmp_path / "best_arch.json", metadata={"flops": 1})
    data = json.loads(path.read_text())
    assert data["format"] == "ghostsearch.Architecture" and data["metadata"] == {"flops": 1}
    assert load_config(path) == cfg


def test_blocks_flatten_stages_in_order():
    cfg = reference_config(1.0)
    assert len(cfg.stages) == 9
    assert len(cfg.blocks) == 16
    assert [b.out_channels for b in cfg.blocks][-5:] == [160] * 5


def test_se_ratio_given_as_int_compares_equal():
    a = BlockConfig(kernel=3, expansion=8, out_channels=8, se_ratio=0)
    assert a.se_ratio == 0.0 and isinstance(a.se_ratio, float)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"kernel": 4}, "kernel=4: must be odd"),
        ({"cheap_kernel": 2}, "cheap_kernel=2: must be odd"),
        ({"ghost_ratio": 1}, "ghost_ratio=1: must be >= 2"),
        ({"expansion": 0}, "expansion=0: must be >= 1"),
        ({"out_channels": -8}, "out_channels=-8: must be >= 1"),
        ({"stride": 3}, "stride=3: must be 1 or 2"),
        ({"se_ratio": 1.5}, "se_ratio=1.5: must be in [0.0, 1.0)"),
        ({"kernel": "3"}, "kernel='3': must be an integer, got str"),
        ({"expansion": 8.0}, "expansion=8.0: must be an integer, got float"),
        ({"ghost_ratio": True}, "ghost_ratio=True: must be an integer, got bool"),
        ({"se_ratio": "high"}, "se_ratio='high': must be a number, got str"),
    ],
)
def test_bad_block_refused_naming_the_field(change, message):
    data = reference_config(1.0).to_dict()
    data["stages"][3][0].update(change)
    with pytest.raises(ConfigError) as e:
        NetConfig.from_dict(data)
    assert str(e.value).startswith(f"stages[3][0].{message}")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"stem_channels": 0}, "stem_channels=0: must be >= 1"),
        ({"head_channels": -1}, "head_channels=-1: must be >= 1"),
        ({"num_classes": -1}, "num_classes=-1: must be >= 0"),
        ({"resolution": "224"}, "resolution='224': must be an integer, got str"),
        ({"stem_stride": 4}, "stem_stride=4: must be 1 or 2"),
        ({"dropout": 1.0}, "dropout=1.0: must be in [0.0, 1.0)"),
        ({"stages": []}, "stages=[]: must be a non-empty list of stages"),
        ({"stages": [[]]}, "stages[0]=[]: must be a non-empty list of blocks"),
        ({"width": 1.0}, "width: unknown key"),
        ({"format": "other"}, "format='other': not a ghostsearch.NetConfig"),
        ({"version": 2}, "version=2: this ghostsearch reads version 1"),
    ],
)
def test_bad_net_refused_naming_the_field(change, message):
    data = reference_config(1.0).to_dict()
    data.update(change)
    with pytest.raises(ConfigError, match=r"^" + __import__("re").escape(message)):
        NetConfig.from_dict(data)


def test_unknown_and_missing_block_keys():
    data = reference_config(1.0).to_dict()
    data["stages"][0][0]["dilation"] = 2
    with pytest.raises(ConfigError, match=r"^stages\[0\]\[0\]\.dilation: unknown key"):
        NetConfig.from_dict(data)
    data = reference_config(1.0).to_dict()
    del data["stages"][1][0]["out_channels"]
    with pytest.raises(ConfigError, match=r"^stages\[1\]\[0\]\.out_channels: missing required key"):
        NetConfig.from_dict(data)
    data = reference_config(1.0).to_dict()
    del data["head_channels"]
    with pytest.raises(ConfigError, match=r"^head_channels: missing required key"):
        NetConfig.from_dict(data)


def test_direct_construction_is_validated_and_frozen():
    with pytest.raises(ConfigError, match="^kernel=2: must be odd"):
        BlockConfig(kernel=2, expansion=8, out_channels=8)
    cfg = reference_config(1.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.stem_channels = 8  # type: ignore[misc]
    with pytest.raises(ConfigError, match="^stem_channels=0"):
        dataclasses.replace(cfg, stem_channels=0)


def test_load_config_reports_file_problems(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match=r"bad\.json: not valid JSON"):
        load_config(bad)
    edited = tmp_path / "edited.json"
    data = reference_config(1.0).to_dict()
    data["stages"][2][0]["cheap_kernel"] = 4
    edited.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"edited\.json: stages\[2\]\[0\]\.cheap_kernel=4"):
        load_config(edited)
    with pytest.raises(ConfigError, match="config: must be a mapping, got list"):
        NetConfig.from_yaml("- 1\n- 2\n")


def test_short_code_names_every_block():
    cfg = reference_config(1.0)
    assert cfg.short().count("_g2_d3") == 16
    assert cfg.blocks[3].short() == "k5_e72_c40_s2_se0.25_g2_d3"
