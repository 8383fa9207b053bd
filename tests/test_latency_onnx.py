"""onnxruntime latency: the kernel list against the runtime's own optimised graph, kernel graphs,
int8 quantisation, kernels timed in their network, and tables on the onnxruntime runtime."""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import random

import pytest

pytest.importorskip("onnxruntime")

import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402

from ghostsearch import ConfigError, analytic_counts, reference_config  # noqa: E402
from ghostsearch.latency import incontext, onnxrt  # noqa: E402
from ghostsearch.latency.kernels import RELU, SIGMOID, Kernel, conv, network_kernels  # noqa: E402
from ghostsearch.latency.table import LatencyTable, kernel_ops  # noqa: E402
from ghostsearch.spaces.space import load_space  # noqa: E402


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


@pytest.mark.parametrize("cfg", [tiny(0.5), reference_config(1.0, num_classes=10,
                                                             resolution=64)],
                         ids=["0.5x-32px", "1.0x-64px"])
def test_every_node_of_a_profiled_network_goes_to_one_of_its_kernels(cfg):
    """In context, each kernel gets the node that computes it and the reorders that serve it:
    no kernel is left without a time and the network's node time is shared out whole."""
    nodes = onnxrt.network_nodes(onnxrt.network_onnx(cfg), 1, runs=3, warmup=1)
    kernels = [k for group in network_kernels(cfg) for k in group]
    assert any(sig[0] in ("ReorderInput", "ReorderOutput") for sig, _ in nodes)
    times = incontext.attribute(kernels, nodes)
    # every kernel matched (a 2x2 addition can take under the profiler's 1 us), but an
    # addition the runtime fused into the convolution before it: NaN, its time in the conv's
    missing = [k.op for k, t in zip(kernels, times, strict=True) if math.isnan(t)]
    assert len(missing) <= 1 and set(missing) <= {"add"}
    known = [t for t in times if not math.isnan(t)]
    assert all(t >= 0 for t in known) and sum(known) == pytest.approx(
        sum(ms for _, ms in nodes))


def test_a_kernel_matches_only_the_node_that_computes_it():
    k = conv(24, 40, 56, 3, 2, groups=1)  # dense 3x3, stride 2: 56 -> 28
    node = ("Conv", ((1, 24, 56, 56), (48, 24, 3, 3)), ((1, 48, 28, 28),))  # padded to 48
    assert incontext.matches(k, node)
    assert not incontext.matches(k, ("Conv", ((1, 24, 56, 56), (48, 24, 5, 5)), ((1, 48, 28, 28),)))
    assert not incontext.matches(k, ("Conv", ((1, 24, 56, 56), (64, 24, 3, 3)), ((1, 64, 28, 28),)))
    assert not incontext.matches(k, ("Concat", ((1, 24, 56, 56),), ((1, 40, 28, 28),)))
    # a serving reorder goes to its neighbour: an input reorder to the kernel after it
    a, b = conv(8, 16, 8, 1), conv(16, 16, 8, 3, groups=16)
    nodes = [(("Conv", ((1, 8, 8, 8), (16, 8, 1, 1)), ((1, 16, 8, 8),)), 1.0),
             (("ReorderOutput", ((1, 16, 8, 8),), ((1, 16, 8, 8),)), 0.25),
             (("ReorderInput", ((1, 16, 8, 8),), ((1, 16, 8, 8),)), 0.5),
             (("Conv", ((1, 16, 8, 8), (16, 1, 3, 3)), ((1, 16, 8, 8),)), 2.0)]
    assert incontext.attribute([a, b], nodes) == [1.25, 2.5]


def test_an_in_context_table_times_kernels_in_their_network_and_round_trips(tmp_path):
    nets = [tiny(0.3), tiny(0.5), tiny(0.75), tiny(1.0)]
    table = LatencyTable("cpu: test", "x", 1, 32, runtime="onnxruntime", method="in-context")
    missing = table.add_network_in_context(nets[0], runs=3, warmup=1)
    keys = {op.key for op in kernel_ops(nets[0])}
    assert set(table.entries) <= keys and len(keys - set(table.entries)) <= missing <= 1
    assert all(k.startswith("add|") for k in keys - set(table.entries))  # fused into a conv
    assert table.predict(nets[0]) == pytest.approx(table.raw_ms(nets[0]))  # not fitted: sum
    for cfg in nets[1:3]:
        table.add_network_in_context(cfg, runs=3, warmup=1)
    pairs = [(cfg, table.measure(cfg, runs=5, warmup=1)[0]) for cfg in nets[:3]]
    table.fit(nets[:3], pairs)
    assert len(table.correction) == 3  # a * sum + b * kernels + c
    assert {"all", "conv1x1s1"} <= set(table.fits)
    unseen = [op for op in kernel_ops(nets[3]) if op.key not in table.entries]
    assert unseen and all(table.op_ms(op) >= 0 for op in unseen)  # the regressions
    back = LatencyTable.load(table.save(tmp_path / "t.json"))
    assert back.method == "in-context" and back.entries == table.entries
    assert back.predict(nets[3]) == pytest.approx(table.predict(nets[3]))
    with pytest.raises(ConfigError, match="in context on onnxruntime float32 only"):
        LatencyTable("cpu: test", "x", 1, 32, runtime="onnxruntime-int8", method="in-context")
    with pytest.raises(ConfigError, match="for method='in-context' tables"):
        LatencyTable("cpu: test", "x", 1, 32, runtime="onnxruntime").add_network_in_context(
            nets[0])
