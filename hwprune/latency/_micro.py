"""Micro models: one kernel as a standalone ONNX model, for timing."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from hwprune.errors import ConfigError
from hwprune.runtimes.kernels import KernelSig
from hwprune.onnx_export import OPSET

__all__ = ["micro_model", "micro_inputs"]


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
    raise ConfigError(f"cannot build a micro model for activation '{act}'")


def micro_inputs(sig: KernelSig, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    if sig.op == "gemm":
        feeds = {"x": rng.standard_normal((1, sig.cin), dtype=np.float32)}
    else:
        feeds = {"x": rng.standard_normal((1, sig.cin, sig.h, sig.w), dtype=np.float32)}
    if (sig.op == "conv" and sig.residual) or sig.op == "add":
        ho, wo = sig.out_hw
        feeds["r"] = rng.standard_normal((1, sig.cout, ho, wo), dtype=np.float32)
    return feeds


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
        raise ConfigError(f"cannot build a micro model for kernel op '{sig.op}'")
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
