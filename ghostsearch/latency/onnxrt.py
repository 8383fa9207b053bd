"""Latency on onnxruntime, the runtime a deployed network ships on: sessions with the runtime's
graph optimisations on (BN folding, conv + activation fusion, NCHWc layout), timing at a fixed
thread count, single kernels built as their own ONNX graphs, and int8 by static quantisation.

Why static int8 (QDQ, per-channel int8 weights, uint8 activations): it is what onnxruntime
runs with int8 convolution kernels; dynamic quantisation leaves convolutions in float32
(onnxruntime quantises only MatMul/Gemm dynamically), so it would time a float network.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..arch.model import build_model
from ..arch.onnx_export import export_onnx
from ..cache import cache_root
from ..errors import require
from .kernels import HARDSIGMOID, RELU, SIGMOID, Kernel

OPSET = 18
RUNTIMES = ("eager", "onnxruntime", "onnxruntime-int8")


def session(model: str | Path | bytes, threads: int, *, profile_dir: str | None = None):
    """An onnxruntime CPU session at `threads` intra-op threads, all graph optimisations on."""
    ort = require("onnxruntime", "deploy", "onnxruntime latency")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3  # the NCHWc serialisation warning is not the user's business
    if profile_dir is not None:
        opts.enable_profiling = True
        opts.profile_file_prefix = str(Path(profile_dir) / "profile")
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])


def feeds(sess, seed: int = 0) -> dict[str, np.ndarray]:
    """Random float32 inputs of the session's (static or batch-1) input shapes."""
    rng = np.random.default_rng(seed)
    return {i.name: rng.standard_normal([d if isinstance(d, int) else 1 for d in i.shape])
            .astype(np.float32) for i in sess.get_inputs()}


def time_session(sess, inputs: dict[str, np.ndarray], *, runs: int, warmup: int) -> list[float]:
    """Milliseconds of each of `runs` session runs after `warmup` untimed ones."""
    for _ in range(warmup):
        sess.run(None, inputs)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, inputs)
        times.append((time.perf_counter() - t0) * 1e3)
    return times


# -- single kernels ----------------------------------------------------------------------------

def kernel_model(kernel: Kernel):
    """`kernel` alone as an ONNX model (random weights; latency does not depend on values)."""
    onnx = require("onnx", "deploy", "building kernel graphs")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    names = [f"x{i}" for i in range(len(kernel.inputs))]
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(s))
              for n, s in zip(names, kernel.inputs, strict=True)]
    output = helper.make_tensor_value_info("y", TensorProto.FLOAT, list(kernel.output))
    inits, nodes = [], []

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(value, name))
        return name

    op = kernel.op
    if op == "conv":
        kh, kw, stride, groups, act = kernel.attrs
        cin, cout = kernel.inputs[0][1], kernel.output[1]
        w = const("w", (rng.standard_normal((cout, cin // groups, kh, kw)) * 0.1)
                  .astype(np.float32))
        b = const("b", rng.standard_normal(cout).astype(np.float32) * 0.1)
        out = "y" if act == 0 else "c"
        nodes.append(helper.make_node("Conv", [names[0], w, b], [out], kernel_shape=[kh, kw],
                                      strides=[stride, stride], group=groups,
                                      pads=[(kh - 1) // 2, (kw - 1) // 2] * 2))
        if act == RELU:
            nodes.append(helper.make_node("Relu", ["c"], ["y"]))
        elif act == HARDSIGMOID:
            nodes.append(helper.make_node("HardSigmoid", ["c"], ["y"], alpha=1 / 6, beta=0.5))
        elif act == SIGMOID:
            nodes.append(helper.make_node("Sigmoid", ["c"], ["y"]))
    elif op == "concat":
        nodes.append(helper.make_node("Concat", names, ["y"], axis=1))
    elif op == "slice":
        nodes.append(helper.make_node("Slice", [names[0], const("s", np.array([0])),
                                                const("e", np.array([kernel.output[1]])),
                                                const("a", np.array([1]))], ["y"]))
    elif op in ("add", "mul"):
        nodes.append(helper.make_node(op.capitalize(), names, ["y"]))
    elif op == "gap":
        nodes.append(helper.make_node("GlobalAveragePool", names, ["y"]))
    elif op == "avgpool":
        nodes.append(helper.make_node("AveragePool", names, ["y"], kernel_shape=[2, 2],
                                      strides=[2, 2]))
    elif op == "resize":
        sizes = const("sizes", np.array(kernel.output, dtype=np.int64))
        nodes.append(helper.make_node("Resize", [names[0], "", "", sizes], ["y"],
                                      mode="nearest"))
    elif op == "gemm":
        w = const("w", rng.standard_normal((kernel.output[1], kernel.inputs[0][1]))
                  .astype(np.float32) * 0.1)
        b = const("b", np.zeros(kernel.output[1], np.float32))
        nodes.append(helper.make_node("Gemm", [names[0], w, b], ["y"], transB=1))
    else:
        raise ValueError(f"no ONNX graph for kernel op {op!r}")
    graph = helper.make_graph(nodes, op, inputs, [output], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


LAYOUT_OPS = ("ReorderInput", "ReorderOutput")  # NCHWc layout changes around blocked convs


Signature = tuple[str, tuple[tuple[int, ...], ...], tuple[tuple[int, ...], ...]]


def _shapes(args: dict, key: str) -> tuple[tuple[int, ...], ...]:
    """The tensor shapes of a profiler event's `key` list ([{"float": [1, 16, 8, 8]}, ...])."""
    return tuple(tuple(next(iter(v.values()))) for v in args.get(key, []))


def node_times(sess, inputs: dict[str, np.ndarray], *, runs: int,
               warmup: int) -> list[tuple[Signature, float]]:
    """Each node the runtime ran, in execution order, as (op name, input shapes, output
    shapes) with its median ms over `runs` runs, from the runtime's profiler (`sess` made with
    a `profile_dir`). The first `warmup` runs are in the profile too; the median keeps them
    out."""
    time_session(sess, inputs, runs=runs, warmup=warmup)
    path = sess.end_profiling()
    try:
        events = json.loads(Path(path).read_text())
    finally:
        with contextlib.suppress(OSError):
            os.remove(path)
    nodes: dict[str, tuple[Signature, list[float]]] = {}
    for e in events:
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time"):
            continue
        if e["name"] not in nodes:
            args = e.get("args", {})
            nodes[e["name"]] = ((args.get("op_name", ""), _shapes(args, "input_type_shape"),
                                 _shapes(args, "output_type_shape")), [])
        nodes[e["name"]][1].append(e["dur"] / 1e3)
    return [(sig, float(np.median(ms))) for sig, ms in nodes.values()]


def profiled_ms(sess, inputs: dict[str, np.ndarray], *, runs: int, warmup: int) -> float:
    """Time inside the runtime's kernels of one run, from its profiler: the median over runs of
    each node, summed over nodes, layout reorders left out.

    Leaves out the Python call into the session (the same for a network as for a kernel, so a
    sum over kernels would count it once per kernel) and the reorders, which a kernel timed
    alone always needs on its input and output but which a network runs only where a
    blocked-layout conv meets a plain-layout op (concat, add, product)."""
    return sum(ms for sig, ms in node_times(sess, inputs, runs=runs, warmup=warmup)
               if sig[0] not in LAYOUT_OPS)


def network_nodes(path: str | Path, threads: int, *, runs: int = 30,
                  warmup: int = 5) -> list[tuple[Signature, float]]:
    """`node_times` of the ONNX network at `path`: every kernel timed in its network."""
    with tempfile.TemporaryDirectory() as tmp:
        sess = session(path, threads, profile_dir=tmp)
        return node_times(sess, feeds(sess), runs=runs, warmup=warmup)


def kernel_ms(kernel: Kernel, threads: int, *, int8: bool = False, runs: int = 30,
              warmup: int = 5) -> float:
    """Latency in ms of `kernel` inside onnxruntime (float32, or int8 quantised statically)."""
    model = kernel_model(kernel)
    with tempfile.TemporaryDirectory() as tmp:
        if int8:
            model = quantize(model, calibration=None, workdir=tmp)
        sess = session(model.SerializeToString(), threads, profile_dir=tmp)
        return profiled_ms(sess, feeds(sess), runs=runs, warmup=warmup)


# -- int8 ----------------------------------------------------------------------------------------

def quantize(model, calibration: Iterable[np.ndarray] | None, workdir: str):
    """`model` (an onnx ModelProto) quantised statically to int8 (QDQ, per-channel weights).

    `calibration` yields float32 input batches for its activation ranges; None uses 8 random
    batches, which times the int8 network correctly but says nothing of its accuracy."""
    onnx = require("onnx", "deploy", "int8 quantisation")
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src, pre, dst = (str(Path(workdir) / n) for n in ("f32.onnx", "pre.onnx", "int8.onnx"))
    onnx.save(model, src)
    try:
        quant_pre_process(src, pre, skip_symbolic_shape=True)
    except Exception:  # noqa: BLE001  (pre-processing is an optimisation; quantise as it is)
        pre = src
    inputs = [(i.name, [d.dim_value or 1 for d in i.type.tensor_type.shape.dim])
              for i in model.graph.input]
    rng = np.random.default_rng(0)
    batches = list(calibration) if calibration is not None else [None] * 8  # None: random

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(batches)

        def get_next(self):
            for batch in self.items:
                if batch is None:
                    return {n: rng.standard_normal(s).astype(np.float32) for n, s in inputs}
                return {inputs[0][0]: np.asarray(batch, np.float32)}
            return None  # no more batches

    quantize_static(pre, dst, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return onnx.load(dst)


# -- whole networks ------------------------------------------------------------------------------

def cache_dir() -> Path:
    return cache_root() / "onnx"


def network_onnx(cfg, *, int8: bool = False) -> Path:
    """The deployed network of `cfg` (random weights) exported as `ghostsearch deploy` exports
    it, and quantised to int8 on random calibration data if asked; cached by config, since the
    export takes seconds."""
    digest = hashlib.sha256(json.dumps(cfg.to_dict(), sort_keys=True).encode()).hexdigest()[:20]
    f32 = cache_dir() / f"{digest}.onnx"
    if not f32.exists():
        tmp = f32.with_name(f"{digest}.{os.getpid()}.onnx")
        export_onnx(build_model(cfg, fused=True), tmp, cfg.resolution)
        tmp.replace(f32)
    if not int8:
        return f32
    q = f32.with_name(f"{digest}-int8.onnx")
    if not q.exists():
        onnx = require("onnx", "deploy", "int8 quantisation")
        with tempfile.TemporaryDirectory() as tmp:
            model = quantize(_static_batch(onnx.load(str(f32))), None, tmp)
        part = q.with_name(f"{digest}-int8.{os.getpid()}.onnx")
        onnx.save(model, str(part))
        part.replace(q)
    return q


def _static_batch(model):
    """Batch dimension fixed to 1, so that calibration and shape inference see one shape."""
    for value in list(model.graph.input) + list(model.graph.output):
        dim = value.type.tensor_type.shape.dim[0]
        if dim.dim_param:
            dim.Clear()
            dim.dim_value = 1
    return model


def network_latency(path: str | Path, threads: int, *, runs: int = 50, warmup: int = 5,
                    repeats: int = 1,
                    inputs: dict[str, np.ndarray] | None = None) -> tuple[float, float]:
    """(median, p90) ms of one run of the ONNX file at `path` on `inputs` (default: random,
    batch 1); with `repeats` > 1, of the least disturbed of that many blocks of `runs` (another
    process on the machine only ever adds time)."""
    sess = session(path, threads)
    inputs = feeds(sess) if inputs is None else inputs
    blocks = [time_session(sess, inputs, runs=runs, warmup=warmup) for _ in range(repeats)]
    times = min(blocks, key=np.median)
    return float(np.median(times)), float(np.percentile(times, 90))
