from __future__ import annotations

import random

import pytest

from ghostsearch import ConfigError, reference_config
from ghostsearch.latency.table import LatencyTable, network_ops
from ghostsearch.spaces.space import load_space


def tiny(width: float):
    return reference_config(width, num_classes=10, resolution=32, stem_stride=1)


def test_ops_cover_the_network_and_flops_add_up():
    from ghostsearch import analytic_counts

    cfg = tiny(0.5)
    ops = network_ops(cfg)
    assert len(ops) == len(cfg.blocks) + 2
    assert ops[0].family == "stem" and ops[-1].family == "head"
    assert sum(op.flops for op in ops) == analytic_counts(cfg).flops
    assert ops[1].family == "block|s1|se0|id" and ops[2].family == "block|s2|se0|proj"


def test_prediction_sums_entries_and_applies_the_correction():
    cfg = tiny(0.5)
    table = LatencyTable("cpu: test", "x", 1, 32)
    table.entries = {op.key: 0.5 for op in network_ops(cfg)}
    table.correction = (2.0, 1.0)
    assert table.raw_ms(cfg) == pytest.approx(0.5 * (len(cfg.blocks) + 2))
    assert table.predict(cfg) == pytest.approx(2.0 * table.raw_ms(cfg) + 1.0)
    with pytest.raises(ConfigError, match="no entry or fit"):
        table.predict(tiny(1.0))  # unseen ops and no regression
    with pytest.raises(ConfigError, match="table is for 32px"):
        table.predict(reference_config(0.5))


def test_built_table_round_trips_and_predicts_unseen_networks(tmp_path):
    from ghostsearch.latency.table import network_ops

    nets = [tiny(w) for w in (0.3, 0.5, 0.75, 1.0)]
    table = LatencyTable("cpu: test", "x", 1, 32)
    for cfg in nets[:3]:
        table.add_network(cfg, runs=3, warmup=1)
    assert all(ms > 0 for ms in table.entries.values())
    # replace the timings by a known cost law (ms = 0.02 per MFLOP + 0.5 per million output
    # elements + 0.01), so that what the regressions learn can be checked exactly
    law = {op.key: 0.01 + 0.02 * op.flops / 1e6 + 0.5 * op.activations / 1e6
           for cfg in nets[:3] for op in network_ops(cfg)}
    table.entries = dict(law)
    table.fit(nets[:3], [(cfg, table.raw_ms(cfg) * 1.5) for cfg in nets[:3]])
    assert table.correction[0] == pytest.approx(1.5, rel=1e-6)
    new_ops = [op for op in network_ops(nets[3]) if op.key not in table.entries]
    assert new_ops  # 1.0x has ops the table never measured: the regressions predict them
    expected = 1.5 * sum(0.01 + 0.02 * op.flops / 1e6 + 0.5 * op.activations / 1e6
                         for op in network_ops(nets[3]))
    unseen = table.predict(nets[3])
    assert unseen == pytest.approx(expected, rel=1e-6)
    path = table.save(tmp_path / "t.json")
    back = LatencyTable.load(path)
    assert back.entries == table.entries and back.fits == table.fits
    assert back.predict(nets[3]) == pytest.approx(unseen)
    (tmp_path / "bad.json").write_text('{"format": "other"}')
    with pytest.raises(ConfigError, match="not a ghostsearch.LatencyTable"):
        LatencyTable.load(tmp_path / "bad.json")


def test_random_params_are_points_of_the_space():
    space = load_space("ghostnet")
    rng = random.Random(0)
    for _ in range(20):
        assert space.contains(space.random_params(rng))


def test_device_type_follows_the_device_name(tmp_path):
    assert LatencyTable("cpu: AMD EPYC (2 logical cores)", "x", 1, 32).device_type == "cpu"
    cuda = LatencyTable("cuda: NVIDIA H100 80GB HBM3", "x", None, 32)
    assert cuda.device_type == "cuda"
    back = LatencyTable.load(cuda.save(tmp_path / "c.json"))
    assert back.threads is None and back.device_type == "cuda"


@pytest.mark.parametrize("device, message", [
    ("cuda", "error: --device cuda: CUDA is not available here; use --device cpu"),
    ("mps", "error: --device mps: latency tables are built on cpu or cuda"),
])
def test_build_script_refuses_devices_it_cannot_measure(tmp_path, device, message):
    import subprocess
    import sys
    from pathlib import Path

    import torch

    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the refusal is for machines without it")
    script = Path(__file__).resolve().parent.parent / "scripts" / "build_latency_table.py"
    r = subprocess.run([sys.executable, str(script), "--device", device], cwd=tmp_path,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stderr.strip() == message


def test_held_out_networks_lie_in_their_bands_and_avoid_the_excluded():
    from ghostsearch import analytic_counts
    from ghostsearch.cli.table import held_out_networks

    space = load_space("ghostnet")
    bands = [(40.0, 60.0), (130.0, 150.0)]
    correction = held_out_networks(space, 4, 7, bands)
    held = held_out_networks(space, 5, 1, bands, exclude=set(correction))
    assert len(held) == 5 and not set(held) & set(correction)
    mflops = sorted(analytic_counts(c).flops / 1e6 for c in held)
    assert all(40 <= f <= 60 for f in mflops[:3]) and all(130 <= f <= 150 for f in mflops[3:])
    uniform = held_out_networks(space, 3, 0, [], exclude=set(held))
    assert len(uniform) == 3 and not set(uniform) & set(held)


@pytest.mark.parametrize("args, message", [
    (["--int8"], "error: --int8 quantises for onnxruntime: add --runtime onnxruntime"),
    (["--runtime", "onnxruntime", "--budgets", "60:40"],
     "error: --budgets '60:40': give LO:HI MFLOPs bands with 0 < LO < HI, comma-separated, "
     "e.g. 40:60,130:150"),
    (["--kernel-archs", "2"], "error: --archs and --kernel-archs must be >= 3 and --eval >= 2"),
    (["--runtime", "onnxruntime", "--kernel-archs", "30"], "error: --kernel-archs times "
     "kernels alone: in context, the kernels are those of the --archs profiled networks; drop "
     "it or add --kernels alone"),
    (["--kernels", "alone"], "error: --kernels chooses how onnxruntime kernels are timed: add "
     "--runtime onnxruntime"),
    (["--runtime", "onnxruntime", "--int8", "--kernels", "in-context"],
     "error: --kernels in-context is for float32: an int8 graph's quantise nodes are not "
     "attributed to kernels; drop --kernels or use alone"),
])
def test_build_script_refuses_bad_runtime_options(tmp_path, args, message):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "scripts" / "build_latency_table.py"
    r = subprocess.run([sys.executable, str(script), *args], cwd=tmp_path,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stderr.strip() == message
    assert not (tmp_path / "results").exists()  # nothing written
