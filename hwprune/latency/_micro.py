"""Micro timing: one kernel as a standalone ONNX model, timed alone.

The fallback for runners that cannot profile whole models (TVM RPC) and for kernels no
anchor design covers. A micro model's median includes the harness's per-run cost, measured
once per table on a near-empty model and taken off (:func:`harness_overhead_ms`).
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from hwprune.devices import MicroModel, Runner
from hwprune.errors import ConfigError
from hwprune.latency._progress import progress_bar
from hwprune.latency._records import Entry, Source, now_iso
from hwprune.latency._table import LatencyTable
from hwprune.onnx_export import OPSET
from hwprune.runtimes.kernels import KernelSig

__all__ = ["micro_model", "harness_overhead_ms", "micro_method", "time_micro"]


def _act_nodes(act: str, src: str, dst: str) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    if act == "none":
        return [helper.make_node("Identity", [src], [dst])], []
    if act == "relu":
        return [helper.make_node("Relu", [src], [dst])], []
    if act == "relu6" or act.startswith("clip"):
        lo, hi = (0.0, 6.0) if act == "relu6" else map(float, act[4:].split("_"))
        inits = [numpy_helper.from_array(np.array(lo, np.float32), "clip_lo"),
                 numpy_helper.from_array(np.array(hi, np.float32), "clip_hi")]
        return [helper.make_node("Clip", [src, "clip_lo", "clip_hi"], [dst])], inits
    names = {"sigmoid": "Sigmoid", "tanh": "Tanh", "hardswish": "HardSwish",
             "hardsigmoid": "HardSigmoid", "leakyrelu": "LeakyRelu"}
    if act in names:
        return [helper.make_node(names[act], [src], [dst])], []
    if act == "silu" or act.startswith("quickgelu"):  # x * sigmoid(alpha * x)
        alpha = 1.0 if act == "silu" else float(act[len("quickgelu"):])
        inits = [numpy_helper.from_array(np.array(alpha, np.float32), "swish_alpha")]
        nodes = [helper.make_node("Mul", [src, "swish_alpha"], ["swish_ax"]),
                 helper.make_node("Sigmoid", ["swish_ax"], ["swish_s"]),
                 helper.make_node("Mul", [src, "swish_s"], [dst])]
        if alpha == 1.0:  # the plain pair onnxruntime matches
            nodes, inits = nodes[1:], []
            nodes[0].input[0] = src
        return nodes, inits
    raise ConfigError(f"cannot build a micro model for activation '{act}'")


def micro_model(sig: KernelSig, seed: int = 0) -> bytes:
    """A one-kernel ONNX model that onnxruntime fuses into exactly the kernel ``sig``."""
    rng = np.random.default_rng(seed)
    inits: list[onnx.TensorProto] = []
    nodes: list[onnx.NodeProto] = []
    inputs = [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1, sig.cin] if sig.op == "gemm" else [1, sig.cin, sig.h, sig.w])]
    ho, wo = sig.out_hw
    if sig.op == "conv":
        if sig.cin % sig.groups or sig.cout % sig.groups:
            raise ConfigError(f"invalid conv kernel {sig.key}: channels not divisible by groups")
        w = rng.standard_normal((sig.cout, sig.cin // sig.groups, *sig.k)).astype(np.float32) * 0.1
        inits += [numpy_helper.from_array(w, "W"),
                  numpy_helper.from_array(rng.standard_normal(sig.cout).astype(np.float32), "B")]
        nodes.append(helper.make_node("Conv", ["x", "W", "B"], ["c"], kernel_shape=list(sig.k),
                                      strides=list(sig.stride), pads=list(sig.pads), group=sig.groups))
        src = "c"
        if sig.residual:
            inputs.append(helper.make_tensor_value_info("r", TensorProto.FLOAT, [1, sig.cout, ho, wo]))
            nodes.append(helper.make_node("Add", ["c", "r"], ["s"]))
            src = "s"
        out_shape = [1, sig.cout, ho, wo]
    elif sig.op == "add":
        inputs.append(helper.make_tensor_value_info("r", TensorProto.FLOAT, [1, sig.cout, ho, wo]))
        nodes.append(helper.make_node("Add", ["x", "r"], ["s"]))
        src, out_shape = "s", [1, sig.cout, ho, wo]
    elif sig.op in ("maxpool", "avgpool"):
        nodes.append(helper.make_node("MaxPool" if sig.op == "maxpool" else "AveragePool", ["x"], ["p"],
                                      kernel_shape=list(sig.k), strides=list(sig.stride),
                                      pads=list(sig.pads)))
        src, out_shape = "p", [1, sig.cout, ho, wo]
    elif sig.op == "gap":
        nodes.append(helper.make_node("GlobalAveragePool", ["x"], ["p"]))
        src, out_shape = "p", [1, sig.cout, 1, 1]
    elif sig.op == "flatten":
        nodes.append(helper.make_node("Flatten", ["x"], ["p"], axis=1))
        src, out_shape = "p", [1, sig.cin * sig.h * sig.w]
    elif sig.op == "gemm":
        w = rng.standard_normal((sig.cout, sig.cin)).astype(np.float32) * 0.1
        inits += [numpy_helper.from_array(w, "W"),
                  numpy_helper.from_array(np.zeros(sig.cout, np.float32), "B")]
        nodes.append(helper.make_node("Gemm", ["x", "W", "B"], ["p"], transB=1))
        src, out_shape = "p", [1, sig.cout]
    elif sig.op == "act":
        src, out_shape = "x", [1, sig.cin, sig.h, sig.w]
    else:
        src, out_shape = _data_movement(sig, inputs, nodes, inits, rng)
    act_nodes, act_inits = _act_nodes(sig.act, src, "y")
    nodes += act_nodes
    inits += act_inits
    graph = helper.make_graph(nodes, "kernel", inputs,
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="hwprune-micro")
    model.ir_version = 8
    return model.SerializeToString()


def _even_split(c: int, n: int) -> list[int]:
    """``c`` channels in ``n`` parts that differ by at most one (the first ones larger)."""
    return [c // n + (1 if i < c % n else 0) for i in range(n)]


def _data_movement(sig: KernelSig, inputs: list, nodes: list, inits: list,
                   rng: np.random.Generator) -> tuple[str, list[int]]:
    """The kernels that move, gate or normalize data (concatenation, SE scale, BatchNorm,
    resize, pad...): the node (or nodes) that produce ``p`` from ``x``, and its shape.
    Where the signature does not record how channels are split among inputs or outputs
    (concat, split), they are split evenly: their cost follows the bytes moved."""
    c, h, w = sig.cin, sig.h, sig.w
    full = [1, c, h, w]

    def tensor(name: str, shape: list[int]) -> None:
        inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shape))

    def const(name: str, arr: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(arr, name))
        return name

    op = sig.op
    if op == "concat":
        n = max(2, sig.groups)
        sizes = _even_split(c, n)
        inputs.clear()
        for i, ci in enumerate(sizes):
            tensor(f"x{i}" if i else "x", [1, ci, h, w])
        nodes.append(helper.make_node("Concat", ["x"] + [f"x{i}" for i in range(1, n)], ["p"], axis=1))
        return "p", full
    if op in ("scale", "mul"):
        tensor("r", [1, c, 1, 1] if op == "scale" else full)
        nodes.append(helper.make_node("Mul", ["x", "r"], ["p"]))
        return "p", full
    if op == "reducemean":
        nodes.append(helper.make_node("ReduceMean", ["x"], ["p"], axes=[2, 3], keepdims=1))  # opset 17
        return "p", [1, c, 1, 1]
    if op == "bn":
        stats = (("gamma", rng.random(c) + 0.5), ("beta", rng.standard_normal(c)),
                 ("mean", rng.standard_normal(c)), ("var", rng.random(c) + 0.5))
        names = [const(n, v.astype(np.float32)) for n, v in stats]
        nodes.append(helper.make_node("BatchNormalization", ["x", *names], ["p"]))
        return "p", full
    if op == "split":
        n = max(2, sig.groups)
        sizes = [sig.cout] * n if sig.cout * n == c else _even_split(c, n)
        outs = ["p"] + [f"unused{i}" for i in range(1, n)]
        nodes.append(helper.make_node("Split", ["x", const("split", np.array(sizes, np.int64))], outs, axis=1))
        return "p", [1, sizes[0], h, w]
    if op == "slice":
        args = [const(n, np.array(v, np.int64)) for n, v in (("starts", [0]), ("ends", [sig.cout]), ("axes", [1]))]
        nodes.append(helper.make_node("Slice", ["x", *args], ["p"]))
        return "p", [1, sig.cout, h, w]
    if op == "transpose":
        nodes.append(helper.make_node("Transpose", ["x"], ["p"], perm=[0, 1, 3, 2]))
        return "p", [1, c, w, h]
    if op.startswith("resize_"):
        sh, sw = sig.stride
        scales = const("scales", np.array([1, 1, sh, sw], np.float32))
        nodes.append(helper.make_node("Resize", ["x", "", scales], ["p"], mode=op[len("resize_"):]))
        return "p", [1, c, h * sh, w * sw]
    if op.startswith("pad_"):
        t, l, b, r = sig.pads
        pads = const("pads", np.array([0, 0, t, l, 0, 0, b, r], np.int64))
        nodes.append(helper.make_node("Pad", ["x", pads], ["p"], mode=op[len("pad_"):]))
        return "p", [1, c, h + t + b, w + l + r]
    if op == "deconv":
        g = sig.groups
        weight = rng.standard_normal((c, sig.cout // g, *sig.k)).astype(np.float32) * 0.1
        nodes.append(helper.make_node("ConvTranspose", ["x", const("W", weight)], ["p"], kernel_shape=list(sig.k),
                                      strides=list(sig.stride), pads=list(sig.pads), group=g))
        ho = (h - 1) * sig.stride[0] - sig.pads[0] - sig.pads[2] + sig.k[0]
        wo = (w - 1) * sig.stride[1] - sig.pads[1] - sig.pads[3] + sig.k[1]
        return "p", [1, sig.cout, ho, wo]
    raise ConfigError(f"cannot build a micro model for kernel op '{op}'")


def harness_overhead_ms(runner: Runner) -> float:
    """Latency of a near-empty model (one ReLU on one value): the per-run harness cost."""
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "overhead",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 1, 1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 1, 1])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    res = next(iter(runner.measure([MicroModel("overhead:relu:1x1x1x1", m.SerializeToString())])))
    return 0.0 if res.error else float(res.median_ms)


def micro_method(overhead_ms: float, facts_text: str) -> str:
    return f"micro model (median minus {overhead_ms:.4f} ms harness overhead): {facts_text}"


def time_micro(table: LatencyTable, runner: Runner, sigs: Sequence[KernelSig], overhead_ms: float, method: str,
               progress: bool, desc: str, on_measure: Callable[[int], None] | None = None) -> tuple[int, list[str]]:
    """Time each kernel alone and journal it; returns (kernels timed, failures as text)."""
    timed, failed = 0, []
    if not sigs:
        return timed, failed
    bar = progress_bar(len(sigs), desc, progress)
    try:
        for m in runner.measure(MicroModel(sig.key, micro_model(sig)) for sig in sigs):
            if m.error:
                failed.append(f"{m.key}: {m.error}")
            else:
                table.record(Entry(m.key, max(m.median_ms - overhead_ms, 0.1 * m.median_ms), Source.MEASURED,
                                   method, now_iso(), "micro", p10_ms=m.p10_ms, p90_ms=m.p90_ms,
                                   std_ms=m.std_ms, runs=m.runs, raw_median_ms=m.median_ms))
                timed += 1
            bar.update(1)
            if on_measure:
                on_measure(timed)
    finally:
        bar.close()
    return timed, failed
