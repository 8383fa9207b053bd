"""onnxruntime latency: the kernel list against the runtime's own optimised graph, kernel graphs,
int8 quantisation, and tables on the onnxruntime runtime."""

from __future__ import annotations

import collections
import dataclasses
import json
import random

import pytest

pytest.importorskip("onnxruntime")

import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402

from ghostsearch import ConfigError, analytic_counts, reference_config  # noqa: E402
from ghostsearch.latency import onnxrt  # noqa: E402
from ghostsearch.latency.kernels import RELU, SIGMOID, Kernel, conv, network_kernels  # noqa: E402
from ghostsearch.latency.table import LatencyTable, kernel_ops  # noqa: E402
from ghostsearch.search.space import load_space  # noqa: E402


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GHOSTSEARCH_CACHE", str(tmp_path / "cache"))


def tiny(width: float = 0.5):
    return reference_config(width, num_classes=10, resolution=32, stem_stride=1)


def family_config():
    """A GhostNetV2/V3 point with DFC attention, fused branches, SE on every block and a ghost
    ratio that makes the Ghost module cut its concatenation."""
    space = load_space("ghostnet_family")
    rng = random.Random(3)
    for _ in range(200):
        cfg = dataclasses.replace(space.build_config(space.random_params(rng)), resolution=64)
        if (any(b.attention == "dfc" for b in cfg.blocks) and any(b.reparam for b in cfg.blocks)
                and any(b.se_ratio > 0 for b in cfg.blocks) and any(
                    -(-b.out_channels // b.ghost_ratio) * b.ghost_ratio > b.out_channels
                    for b in cfg.blocks)):
            return cfg
    raise AssertionError("no such point in 200 draws")


def optimised_ops(path, tmp_path) -> collections.Counter:
    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(tmp_path / "optimised.onnx")
    opts.log_severity_level = 3
    ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return collections.Counter(n.op_type for n in onnx.load(opts.optimized_model_filepath)
                               .graph.node)


@pytest.mark.slow
@pytest.mark.parametrize("make", [tiny, family_config], ids=["v1", "v2-v3"])
def test_kernels_are_the_nodes_onnxruntime_runs(make, tmp_path):
    cfg = make()
    kernels = collections.Counter(k.op for group in network_kernels(cfg) for k in group)
    runtime = optimised_ops(onnxrt.network_onnx(cfg), tmp_path)
    assert kernels["conv"] == runtime["Conv"] + runtime["FusedConv"]  # BN folded, act fused
    assert "Relu" not in runtime and "HardSigmoid" not in runtime and "Sigmoid" not in runtime
    for op, node in [("gemm", "Gemm"), ("add", "Add"), ("mul", "Mul"), ("gap", "ReduceMean"),
                     ("slice", "Slice"), ("avgpool", "AveragePool"), ("resize", "Resize")]:
        assert kernels[op] == runtime[node], op
    assert kernels["concat"] == runtime["Concat"] - kernels["resize"]  # + Resize's sizes
    if make is family_config:
        assert kernels["slice"] and kernels["resize"]


def test_kernel_multiply_adds_are_the_networks_flops():
    for cfg in (tiny(0.5), tiny(1.3), reference_config(1.0)):
        kernels = [k for group in network_kernels(cfg) for k in group]
        assert sum(k.macs for k in kernels if k.op in ("conv", "gemm")) == \
            analytic_counts(cfg).flops
    groups = network_kernels(tiny())
    assert len(groups) == len(tiny().blocks) + 2
    assert [k.op for k in groups[-1]] == ["conv", "gap", "conv", "gemm"]


def test_kernel_keys_carry_context_and_families_group_them():
    a = conv(16, 32, 56, 1, act=RELU)
    assert a.key == "conv|1x16x56x56|1x32x56x56|1,1,1,1,1" and a.family == "conv1x1s1"
    dw = conv(72, 72, 56, 5, 2, groups=72)
    assert dw.output == (1, 72, 28, 28) and dw.family == "conv5x5s2dw"
    assert dw.macs == 72 * 28 * 28 * 25
    assert conv(16, 16, 14, (1, 5), groups=16).family == "conv1x5s1dw"
    assert Kernel("add", ((1, 8, 4, 4),) * 2, (1, 8, 4, 4)).elements == 3 * 128


@pytest.mark.parametrize("kernel", [
    conv(8, 16, 10, 3, 2, act=RELU), conv(8, 8, 10, 5, groups=8), conv(8, 16, 7, (5, 1),
                                                                        groups=8, act=SIGMOID),
    conv(8, 8, 1, 1, act=2),
    Kernel("concat", ((1, 4, 6, 6), (1, 4, 6, 6)), (1, 8, 6, 6)),
    Kernel("slice", ((1, 9, 6, 6),), (1, 7, 6, 6)),
    Kernel("add", ((1, 8, 6, 6),) * 2, (1, 8, 6, 6)),
    Kernel("mul", ((1, 8, 6, 6), (1, 8, 1, 1)), (1, 8, 6, 6)),
    Kernel("gap", ((1, 8, 6, 6),), (1, 8, 1, 1)),
    Kernel("avgpool", ((1, 8, 6, 6),), (1, 8, 3, 3)),
    Kernel("resize", ((1, 8, 3, 3),), (1, 8, 6, 6)),
    Kernel("gemm", ((1, 32),), (1, 10)),
], ids=lambda k: k.family)
def test_every_kernel_runs_alone_with_its_output_shape(kernel):
    model = onnxrt.kernel_model(kernel)
    sess = onnxrt.session(model.SerializeToString(), 1)
    out = sess.run(None, onnxrt.feeds(sess))[0]
    assert out.shape == kernel.output
    assert onnxrt.kernel_ms(kernel, 1, runs=3, warmup=1) > 0


def test_unknown_kernel_op_is_refused():
    with pytest.raises(ValueError, match="no ONNX graph for kernel op 'softmax'"):
        onnxrt.kernel_model(Kernel("softmax", ((1, 10),), (1, 10)))


def test_int8_kernels_and_networks_are_quantised(tmp_path):
    kernel = conv(16, 32, 14, 1, act=RELU)
    q = onnxrt.quantize(onnxrt.kernel_model(kernel), None, str(tmp_path))
    ops = collections.Counter(n.op_type for n in q.graph.node)
    assert ops["QuantizeLinear"] >= 1 and ops["DequantizeLinear"] >= 2  # input and weights
    assert onnxrt.kernel_ms(kernel, 1, int8=True, runs=3, warmup=1) > 0
    cfg = tiny(0.3)
    path = onnxrt.network_onnx(cfg, int8=True)
    assert path.name.endswith("-int8.onnx") and path.exists()
    assert path.with_name(path.name.replace("-int8", "")).exists()  # the float32 export
    sess = onnxrt.session(path, 1)
    assert sess.run(None, onnxrt.feeds(sess))[0].shape == (1, 10)
    assert onnxrt.network_onnx(cfg, int8=True) == path  # cached


def test_onnxruntime_table_measures_kernels_and_round_trips(tmp_path):
    cfg = tiny(0.3)
    table = LatencyTable("cpu: test", "x", 1, 32, runtime="onnxruntime")
    table.add_network(cfg, runs=3, warmup=1)
    ops = kernel_ops(cfg)
    assert set(table.entries) == {op.key for op in ops}
    assert all(ms > 0 for ms in table.entries.values())
    median, p90 = table.measure(cfg, runs=5, warmup=1)
    assert 0 < median <= p90
    table.fit([cfg], [(cfg, median)])
    assert table.predict(cfg) == pytest.approx(table.raw_ms(cfg))  # one pair: no correction
    back = LatencyTable.load(table.save(tmp_path / "t.json"))
    assert back.runtime == "onnxruntime" and back.entries == table.entries
    v1 = json.loads((tmp_path / "t.json").read_text())
    del v1["runtime"]
    (tmp_path / "v1.json").write_text(json.dumps(v1))
    assert LatencyTable.load(tmp_path / "v1.json").runtime == "eager"  # older tables
    with pytest.raises(ConfigError, match="runtime='tensorrt'"):
        LatencyTable("cpu: test", "x", 1, 32, runtime="tensorrt")
    with pytest.raises(ConfigError, match="onnxruntime tables are measured on the CPU"):
        LatencyTable("cuda: H100", "x", None, 32, runtime="onnxruntime")
