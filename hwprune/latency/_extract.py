"""Kernel extraction: the kernels a model runs as on onnxruntime, after its fusions.

onnxruntime writes the graph it runs (``SessionOptions.optimized_model_filepath``). We
read it at the *extended* level, where BatchNorm is folded and activations are fused into
``FusedConv`` but tensors keep their standard layout and names, so every kernel's shapes
are known. At the *all* level the CPU provider additionally converts convolutions to its
blocked NCHWc layout and fuses ``Conv -> Add -> Relu`` (a residual add) into one
convolution; we mirror exactly that one rule (checked against the all-level graph in the
tests) so a residual conv is timed as the single kernel the runtime executes.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, fields
from typing import Sequence

import onnx
from onnx import helper, shape_inference

from hwprune.errors import ConfigError
from hwprune.latency._signature import KernelSig
from hwprune.pruning._symbolic import Dim

__all__ = ["extract_kernels", "KernelTemplate", "optimized_graph"]

_ACTS = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "LeakyRelu": "leakyrelu",
         "HardSigmoid": "hardsigmoid", "HardSwish": "hardswish"}
_SKIP = {"Identity", "Dropout"}


def optimized_graph(data: bytes, level: str = "extended") -> onnx.ModelProto:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    so.graph_optimization_level = {
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[level]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "opt.onnx")
        so.optimized_model_filepath = path
        ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
        return onnx.load(path)


def _attr(node: onnx.NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _act_name(node: onnx.NodeProto) -> str:
    act = _attr(node, "activation")
    if act is None:
        return "none"
    act = act.decode() if isinstance(act, bytes) else act
    if act == "Clip":
        lo, hi = (list(_attr(node, "activation_params", [0.0, 6.0])) + [0.0, 6.0])[:2]
        return "relu6" if (lo, hi) == (0.0, 6.0) else f"clip{lo:g}_{hi:g}"
    return _ACTS.get(act, act.lower())


def _clip_act(node: onnx.NodeProto, consts: dict[str, list[float]]) -> str | None:
    if node.op_type != "Clip":
        return None
    lo = consts.get(node.input[1], [None])[0] if len(node.input) > 1 and node.input[1] else None
    hi = consts.get(node.input[2], [None])[0] if len(node.input) > 2 and node.input[2] else None
    return "relu6" if (lo, hi) == (0.0, 6.0) else f"clip{lo}_{hi}"


@dataclass(frozen=True)
class RawKernel:
    name: str        # ONNX node name of the kernel's main node
    sig: KernelSig
    outputs: tuple[str, ...] = ()  # tensors of the fused chain: the runtime names its node after one


def extract_kernels(data: bytes) -> list[RawKernel]:
    """Kernels of an ONNX model (static shapes) as onnxruntime's CPU provider runs them."""
    model = shape_inference.infer_shapes(onnx.load_from_string(data))
    shapes: dict[str, list[int]] = {}
    for vi in list(model.graph.input) + list(model.graph.value_info) + list(model.graph.output):
        shapes[vi.name] = [d.dim_value for d in vi.type.tensor_type.shape.dim]
    opt = optimized_graph(data, "extended")
    inits = {i.name: list(i.dims) for i in opt.graph.initializer}
    consts = {i.name: list(onnx.numpy_helper.to_array(i).reshape(-1)[:1].astype(float))
              for i in opt.graph.initializer if len(i.dims) == 0 or list(i.dims) == [1]}
    nodes = [n for n in opt.graph.node if n.op_type not in _SKIP]
    consumers: dict[str, list[int]] = {}
    for i, n in enumerate(nodes):
        for t in n.input:
            consumers.setdefault(t, []).append(i)
    graph_outputs = {o.name for o in opt.graph.output}
    produced_at = {o: i for i, n in enumerate(nodes) for o in n.output}

    def only_consumer(tensor: str) -> int | None:
        c = consumers.get(tensor, [])
        return c[0] if len(c) == 1 and tensor not in graph_outputs else None

    def shape(t: str) -> list[int]:
        if t in shapes:
            return shapes[t]
        if t in inits:
            return inits[t]
        raise ConfigError(f"no static shape for tensor '{t}'; export with a fixed input shape")

    def hw(s: list[int]) -> tuple[int, int]:
        return (s[2], s[3]) if len(s) == 4 else (1, 1)

    kernels: list[RawKernel] = []
    consumed: set[int] = set()
    unsupported: dict[str, int] = {}
    for i, n in enumerate(nodes):
        if i in consumed:
            continue
        op = n.op_type
        outs = [n.output[0]]
        if op in ("Conv", "FusedConv"):
            x = shape(n.input[0])
            w = shape(n.input[1])
            if len(x) != 4:
                unsupported[f"{op} on rank-{len(x)} input"] = unsupported.get(op, 0) + 1
                continue
            groups = int(_attr(n, "group", 1))
            k = tuple(_attr(n, "kernel_shape", w[2:]))
            act, residual = _act_name(n), False
            if op == "Conv":
                j = only_consumer(n.output[0])
                other = [t for t in nodes[j].input if t != n.output[0]] if j is not None else []
                if (j is not None and nodes[j].op_type == "Add" and len(other) == 1
                        and produced_at.get(other[0], -1) < i):
                    # the runtime fuses the add into the conv that produces its last input
                    residual = True
                    consumed.add(j)
                    outs.append(nodes[j].output[0])
                    r = only_consumer(nodes[j].output[0])
                    if r is not None and nodes[r].op_type == "Relu":
                        act = "relu"
                        consumed.add(r)
                        outs.append(nodes[r].output[0])
                elif j is not None and (nodes[j].op_type in _ACTS or _clip_act(nodes[j], consts)):
                    act = _ACTS.get(nodes[j].op_type) or _clip_act(nodes[j], consts)
                    consumed.add(j)
                    outs.append(nodes[j].output[0])
            sig = KernelSig("conv", x[1], w[0], (int(k[0]), int(k[1])),
                            tuple(int(s) for s in _attr(n, "strides", [1, 1])),
                            tuple(int(p) for p in _attr(n, "pads", [0, 0, 0, 0])),
                            groups, x[2], x[3], act, residual)
        elif op == "Add":
            x = shape(n.input[0])
            act = "none"
            r = only_consumer(n.output[0])
            if r is not None and nodes[r].op_type == "Relu":
                act = "relu"
                consumed.add(r)
                outs.append(nodes[r].output[0])
            sig = KernelSig("add", x[1], x[1], h=hw(x)[0], w=hw(x)[1], act=act)
        elif op in ("MaxPool", "AveragePool"):
            x = shape(n.input[0])
            sig = KernelSig("maxpool" if op == "MaxPool" else "avgpool", x[1], x[1],
                            tuple(int(v) for v in _attr(n, "kernel_shape")),
                            tuple(int(v) for v in _attr(n, "strides", [1, 1])),
                            tuple(int(v) for v in _attr(n, "pads", [0, 0, 0, 0])),
                            1, x[2], x[3])
        elif op == "GlobalAveragePool":
            x = shape(n.input[0])
            sig = KernelSig("gap", x[1], x[1], h=x[2], w=x[3])
        elif op in ("Flatten", "Reshape", "Squeeze"):
            x = shape(n.input[0])
            sig = KernelSig("flatten", x[1], x[1], h=hw(x)[0], w=hw(x)[1])
        elif op in ("Gemm", "MatMul") and n.input[1] in inits:
            x = shape(n.input[0])
            w = inits[n.input[1]]
            trans_b = int(_attr(n, "transB", 0)) if op == "Gemm" else 0
            cout = w[0] if trans_b else w[-1]
            sig = KernelSig("gemm", x[-1], cout, h=1, w=1)
        elif op in _ACTS or (op == "Clip" and _clip_act(n, consts)):
            x = shape(n.input[0])
            sig = KernelSig("act", x[1], x[1], h=hw(x)[0], w=hw(x)[1],
                            act=_ACTS.get(op) or _clip_act(n, consts))
        else:
            unsupported[op] = unsupported.get(op, 0) + 1
            continue
        kernels.append(RawKernel(n.name or f"{op}_{i}", sig, tuple(reversed(outs))))
    if unsupported:
        listing = ", ".join(f"{k} (x{v})" for k, v in sorted(unsupported.items()))
        raise ConfigError(f"the latency model does not support these operators yet: {listing}")
    return kernels


_INT_FIELDS = ("cin", "cout", "groups", "h", "w")


@dataclass(frozen=True)
class KernelTemplate:
    """A kernel whose channel fields depend on the plan (``Dim`` per integer field)."""

    name: str
    base: KernelSig                 # the dense kernel
    dims: tuple[Dim, ...]           # one per field in _INT_FIELDS
    outputs: tuple[str, ...] = ()   # tensors of the fused chain (name its runtime node)

    def runtime_names(self) -> tuple[str, ...]:
        """Names onnxruntime may give this kernel's node in a profile."""
        return tuple(f"{o}_nchwc" for o in self.outputs) + self.outputs + (self.name,)

    def sig(self, keep: Sequence[int]) -> KernelSig:
        vals = {f: d.value(keep) for f, d in zip(_INT_FIELDS, self.dims)}
        return KernelSig(self.base.op, vals["cin"], vals["cout"], self.base.k, self.base.stride,
                         self.base.pads, vals["groups"], vals["h"], vals["w"], self.base.act,
                         self.base.residual, self.base.dtype)

    @property
    def groups_used(self) -> tuple[int, ...]:
        return tuple(sorted({d.group for d in self.dims if d.group >= 0}))


def kernel_templates(onnx_models: Sequence[bytes], solve) -> list[KernelTemplate]:
    """Templates from the dense and two tag-plan exports (see ``pruning._symbolic``)."""
    lists = [extract_kernels(d) for d in onnx_models]
    if len({len(x) for x in lists}) != 1 or any(
            [k.name for k in lists[0]] != [k.name for k in other] for other in lists[1:]):
        raise ConfigError("onnxruntime fused the pruned model differently from the dense one; "
                          "the kernel structure depends on channel counts")
    out = []
    for dense, a, b in zip(*lists):
        dims = tuple(solve((getattr(dense.sig, f), getattr(a.sig, f), getattr(b.sig, f)),
                           f"kernel {dense.name} field {f}") for f in _INT_FIELDS)
        out.append(KernelTemplate(dense.name, dense.sig, dims, dense.outputs))
    return out


assert set(_INT_FIELDS) <= {f.name for f in fields(KernelSig)}
