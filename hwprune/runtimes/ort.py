"""onnxruntime: every session hwprune builds, its facts, and the kernels it runs.

Kernel extraction reads the graph onnxruntime really runs
(``SessionOptions.optimized_model_filepath``) at the *extended* level, where BatchNorm is
folded and activations are fused into ``FusedConv`` but tensors keep their standard layout
and names, so every kernel's shapes are known. At the *all* level the CPU provider
additionally converts convolutions to its blocked NCHWc layout and fuses
``Conv -> Add -> Relu`` (a residual add) into one convolution; :func:`extract_kernels`
mirrors exactly that one rule (checked against the all-level graph in the tests) so a
residual conv is timed as the single kernel the runtime executes.
"""
from __future__ import annotations

import functools
import math
import json
import os
import platform
import statistics
import tempfile
from typing import Any

import onnx
from onnx import helper, shape_inference

from hwprune.errors import ConfigError, MissingDependencyError
from hwprune.runtimes import Runtime, RuntimeSpec, Session, random_inputs
from hwprune.runtimes.kernels import KernelSig, RawKernel
from hwprune.runtimes.timing import pinned, timing_cores

__all__ = ["OrtRuntime", "cpu_model", "ort_identity", "ort_facts", "make_session", "channel_block", "optimized_graph",
           "extract_kernels", "profile_nodes_ort", "ort_version", "static_shapes"]

_LEVELS = {"disabled": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC",
           "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ort():
    try:
        import onnxruntime as ort
    except ImportError as exc:  # pragma: no cover - a dependency
        raise MissingDependencyError("onnxruntime is not installed", "pip install onnxruntime") from exc
    return ort


def ort_version() -> str:
    return str(_ort().__version__)


def ort_identity(threads: int, level: str = "all", provider: str = "CPUExecutionProvider") -> dict[str, Any]:
    """Machine, versions and settings, read without starting onnxruntime."""
    import numpy

    return {"machine": platform.node(), "arch": platform.machine(), "cpu": cpu_model(),
            "runtime": "onnxruntime", "runtime_version": ort_version(),
            "provider": provider, "threads": threads, "graph_optimization_level": level,
            "python": platform.python_version(), "numpy": numpy.__version__}


def ort_facts(threads: int, level: str = "all", provider: str = "CPUExecutionProvider") -> dict[str, Any]:
    """:func:`ort_identity` plus the channel block, probed by optimizing a convolution."""
    return {**ort_identity(threads, level, provider), "channel_block": channel_block(level, provider)}


@functools.lru_cache(maxsize=None)
def channel_block(level: str = "all", provider: str = "CPUExecutionProvider") -> int:
    """The channel count this runtime pads convolutions to (1: no padding).

    onnxruntime's CPU provider rewrites convolutions into blocked (NCHWc) kernels whose
    channels are padded to the SIMD block: 16 on AVX-512, 8 on AVX2, none where the
    rewrite is off. A 65-channel probe convolution is optimized and the padded weight
    shape read back, so the block is what this runtime really does, not a guess from the
    CPU flags. A 56-channel layer then costs what a 64-channel one does.
    """
    import numpy as np
    from onnx import TensorProto, numpy_helper

    cout = 65  # ceil(65 / b) * b differs for every power of two b up to 64
    w = numpy_helper.from_array(np.zeros((cout, 8, 3, 3), np.float32), "w")
    g = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])], "probe",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, cout, 8, 8])], [w])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    ort = _ort()
    so = _session_options(1, level)
    try:
        with tempfile.TemporaryDirectory(prefix="hwprune-block-") as tmp:
            so.optimized_model_filepath = os.path.join(tmp, "probe.onnx")
            ort.InferenceSession(model.SerializeToString(), so, providers=[provider])
            opt = onnx.load(so.optimized_model_filepath).graph
    except Exception:  # a provider that cannot save its graph: assume no padding
        return 1
    dims = {i.name: list(i.dims) for i in opt.initializer}
    for node in opt.node:
        if node.op_type == "Conv" and len(node.input) > 1 and node.input[1] in dims:
            padded = dims[node.input[1]][0]
            for b in (2, 4, 8, 16, 32, 64):
                if -(-cout // b) * b == padded:
                    return b
    return 1


def _session_options(threads: int, level: str):
    ort = _ort()
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _LEVELS[level])
    return so


def make_session(model: bytes | str, threads: int, level: str = "all",
                 provider: str = "CPUExecutionProvider"):
    """The one place hwprune opens an onnxruntime session."""
    return _ort().InferenceSession(model, _session_options(threads, level), providers=[provider])


def profile_nodes_ort(onnx: bytes, threads: int, level: str, provider: str, runs: int,
                      warmup: int = 5) -> dict[str, float]:
    """Median per-node kernel time (ms) over ``runs`` profiled runs of a whole model.

    Single-threaded models are profiled on each of :func:`timing_cores` in turn (the runs
    split between them) and the core with the smallest total is kept.
    """
    ort = _ort()
    cores = timing_cores(threads) or [None]
    best: dict[str, float] | None = None
    with tempfile.TemporaryDirectory(prefix="hwprune-prof-") as tmp:
        so = _session_options(threads, level)
        plain = ort.InferenceSession(onnx, so, providers=[provider])
        feeds = _feeds(plain)
        for _ in range(warmup):  # warm the caches and the allocator without profiling
            plain.run(None, feeds)
        del plain
        for i, core in enumerate(cores):
            so = _session_options(threads, level)
            so.enable_profiling = True
            so.profile_file_prefix = os.path.join(tmp, f"prof{i}")
            with pinned(core):
                sess = ort.InferenceSession(onnx, so, providers=[provider])
                for _ in range(warmup + max(3, -(-runs // len(cores)))):
                    sess.run(None, feeds)
                with open(sess.end_profiling()) as f:
                    events = json.load(f)
            per: dict[str, list[float]] = {}
            for e in events:
                name = e.get("name", "")
                if e.get("cat") == "Node" and name.endswith("_kernel_time"):
                    per.setdefault(name[: -len("_kernel_time")], []).append(e["dur"] / 1000.0)
            nodes = {k: statistics.median(v[warmup:] or v) for k, v in per.items()}
            if best is None or sum(nodes.values()) < sum(best.values()):
                best = nodes
    return best or {}


def _feeds(sess) -> dict:
    return random_inputs([(i.name, i.shape) for i in sess.get_inputs()])


def _ort_session(sess) -> Session:
    inputs = [(i.name, tuple(int(d) for d in i.shape)) for i in sess.get_inputs()]
    return Session(inputs, lambda feeds: sess.run(None, feeds),
                   lambda feeds: functools.partial(sess.run, None, feeds))


class OrtRuntime(Runtime):
    """onnxruntime with the profile's threads, graph optimization level and provider."""

    name = "onnxruntime"
    profiles_nodes = True

    def __init__(self, spec: RuntimeSpec | None = None) -> None:
        super().__init__(spec or RuntimeSpec("onnxruntime"))
        self.level, self.provider = self.spec.graph_optimization_level, self.spec.provider

    def facts(self) -> dict[str, Any]:
        return ort_facts(self.threads, self.level, self.provider)

    def identity(self) -> dict[str, Any]:
        return ort_identity(self.threads, self.level, self.provider)

    def session(self, model: bytes | str) -> Session:
        return _ort_session(make_session(model, self.threads, self.level, self.provider))

    def kernels(self, onnx_bytes: bytes) -> list[RawKernel]:
        return extract_kernels(onnx_bytes)

    def channel_block(self) -> int:
        return channel_block(self.level, self.provider)

    def profile_nodes(self, onnx_bytes: bytes, runs: int) -> dict[str, float]:
        return profile_nodes_ort(onnx_bytes, self.threads, self.level, self.provider, runs)


# --------------------------------------------------------------------------- kernels

_ACTS = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "LeakyRelu": "leakyrelu",
         "HardSigmoid": "hardsigmoid", "HardSwish": "hardswish"}
#: Activations that run as kernels of their own (never fused into a convolution here).
_STANDALONE_ACTS = {**_ACTS, "Gelu": "gelu"}
_SKIP = {"Identity", "Dropout"}
#: Element-wise operators: their output has their first input's shape.
_SHAPE_KEEPING = {"Relu", "Sigmoid", "Tanh", "LeakyRelu", "HardSigmoid", "HardSwish", "Gelu", "QuickGelu",
                  "Clip", "BatchNormalization"}
#: Operators with a kernel rule besides convolutions (see :func:`_other_kernel`).
_OTHER_OPS = {"Add", "MaxPool", "AveragePool", "GlobalAveragePool", "Flatten", "Reshape", "Squeeze", "Gemm",
              "MatMul", "Clip", *_ACTS,
              "FusedGemm", "Concat", "Split", "Slice", "Mul", "QuickGelu", "ReduceMean", "Resize", "Upsample",
              "ConvTranspose", "Pad", "BatchNormalization", "Transpose", "Unsqueeze", *_STANDALONE_ACTS}


def optimized_graph(data: bytes, level: str = "extended") -> onnx.ModelProto:
    """The graph onnxruntime's CPU provider runs after its optimizations at ``level``."""
    so = _session_options(1, level)
    with tempfile.TemporaryDirectory(prefix="hwprune-opt-") as tmp:
        path = os.path.join(tmp, "opt.onnx")
        so.optimized_model_filepath = path
        _ort().InferenceSession(data, so, providers=["CPUExecutionProvider"])
        return onnx.load(path)


def static_shapes(data: bytes) -> tuple[onnx.ModelProto, dict[str, list[int]]]:
    """The model with ONNX shape inference run, and every tensor's static shape.

    Shape inference cannot follow some exporter patterns (a reflection pad's computed
    ``pads``); where it leaves a dimension unknown, the model is run once in onnxruntime
    with every tensor as an output and the shapes are read off.
    """
    model = shape_inference.infer_shapes(onnx.load_from_string(data), data_prop=True)
    shapes: dict[str, list[int]] = {}
    for vi in list(model.graph.input) + list(model.graph.value_info) + list(model.graph.output):
        shapes[vi.name] = [d.dim_value for d in vi.type.tensor_type.shape.dim]
    produced = [o for n in model.graph.node for o in n.output if o]
    if all(o in shapes and shapes[o] and all(d > 0 for d in shapes[o]) for o in produced):
        return model, shapes
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    known = {o.name for o in probe.graph.output}
    probe.graph.output.extend(onnx.ValueInfoProto(name=o) for o in produced if o not in known)
    so = _session_options(1, "disabled")
    sess = _ort().InferenceSession(probe.SerializeToString(), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    for name, value in zip(names, sess.run(None, _feeds(sess))):
        shapes[name] = list(getattr(value, "shape", ()))
    return model, shapes


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


class _Graph:
    """The graph onnxruntime runs (extended level) with the static shapes of the original."""

    def __init__(self, data: bytes) -> None:
        self.shapes = static_shapes(data)[1]
        opt = optimized_graph(data, "extended")
        self.inits = {i.name: list(i.dims) for i in opt.graph.initializer}
        self.consts = {i.name: list(onnx.numpy_helper.to_array(i).reshape(-1)[:1].astype(float))
                       for i in opt.graph.initializer if len(i.dims) == 0 or list(i.dims) == [1]}
        # small integer initializers (pads, split sizes, slice bounds, shapes), whole
        self.ints = {i.name: [int(v) for v in onnx.numpy_helper.to_array(i).reshape(-1)]
                     for i in opt.graph.initializer
                     if i.data_type in (onnx.TensorProto.INT64, onnx.TensorProto.INT32) and len(i.dims) <= 1}
        self.nodes = [n for n in opt.graph.node if n.op_type not in _SKIP]
        self.consumers: dict[str, list[int]] = {}
        for i, n in enumerate(self.nodes):
            for t in n.input:
                self.consumers.setdefault(t, []).append(i)
        self.outputs = {o.name for o in opt.graph.output}
        self.produced_at = {o: i for i, n in enumerate(self.nodes) for o in n.output}
        # the exporter's names survive the optimizer: shapes are read under the original
        # names, and a node the optimizer created takes its shapes from its neighbours
        for n in opt.graph.node:
            if n.op_type in _SKIP and n.input and n.output and n.input[0] in self.shapes:
                self.shapes.setdefault(n.output[0], self.shapes[n.input[0]])

    def only_consumer(self, tensor: str) -> int | None:
        c = self.consumers.get(tensor, [])
        return c[0] if len(c) == 1 and tensor not in self.outputs else None

    def shape(self, t: str) -> list[int]:
        if t in self.shapes:
            return self.shapes[t]
        if t in self.inits:
            return self.inits[t]
        p = self.produced_at.get(t)
        if p is not None and self.nodes[p].op_type in _SHAPE_KEEPING:  # a tensor the optimizer made
            return self.shape(self.nodes[p].input[0])
        raise ConfigError(f"no static shape for tensor '{t}'; export with a fixed input shape")

    def absorb_relu(self, tensor: str, consumed: set[int], outs: list[str]) -> bool:
        """Fuse a ReLU that is the only consumer of ``tensor``; True when there was one."""
        r = self.only_consumer(tensor)
        if r is None or self.nodes[r].op_type != "Relu":
            return False
        consumed.add(r)
        outs.append(self.nodes[r].output[0])
        return True

    def swish_of(self, tensor: str, gate_ops: tuple[str, ...]) -> tuple[int, int] | None:
        """``(gate, mul)`` when ``tensor`` feeds exactly ``Mul(tensor, gate(tensor))``: the
        hard-swish (``HardSigmoid``) or swish/SiLU (``Sigmoid``) written as two operators."""
        c = self.consumers.get(tensor, [])
        if len(c) != 2 or tensor in self.outputs:
            return None
        for gi, mi in (c, c[::-1]):
            gate, mul = self.nodes[gi], self.nodes[mi]
            if (gate.op_type in gate_ops and mul.op_type == "Mul" and self.only_consumer(gate.output[0]) == mi
                    and set(mul.input) == {tensor, gate.output[0]}):
                if gate.op_type == "HardSigmoid" and (round(float(_attr(gate, "alpha", 0.2)), 4),
                                                      float(_attr(gate, "beta", 0.5))) != (0.1667, 0.5):
                    return None
                return gi, mi
        return None


def _hw(s: list[int]) -> tuple[int, int]:
    return (s[2], s[3]) if len(s) == 4 else (1, 1)


def _flat(s: list[int]) -> tuple[int, int, int]:
    """``(channels, h, w)`` of a tensor of any rank: rank 4 is NCHW, rank 5 (a channel
    shuffle's ``N x G x C/G x H x W``) folds its two channel axes, others are ``(features, 1, 1)``."""
    if len(s) == 4:
        return s[1], s[2], s[3]
    if len(s) == 5:
        return s[1] * s[2], s[3], s[4]
    return math.prod(s[1:]) if len(s) > 1 else (s[0] if s else 1), 1, 1


def _conv_kernel(g: _Graph, i: int, n: onnx.NodeProto, consumed: set[int], outs: list[str]) -> KernelSig:
    """A convolution with what the runtime fuses into it: BN, an activation, or (at level
    'all') a residual add whose other input was produced earlier, and a ReLU after it; a
    hard-swish written as ``x * HardSigmoid(x)`` too (the NCHWc convolution takes it)."""
    x, w = g.shape(n.input[0]), g.shape(n.input[1])
    k = tuple(_attr(n, "kernel_shape", w[2:]))
    act, residual = _act_name(n), False
    if n.op_type == "Conv":
        j = g.only_consumer(n.output[0])
        nxt = g.nodes[j] if j is not None else None
        other = [t for t in nxt.input if t != n.output[0]] if nxt is not None else []
        hswish = g.swish_of(n.output[0], ("HardSigmoid",)) if j is None else None
        if nxt is not None and nxt.op_type == "Add" and len(other) == 1 and g.produced_at.get(other[0], -1) < i:
            residual = True  # the runtime fuses the add into the conv that produces its last input
            consumed.add(j)
            outs.append(nxt.output[0])
            if g.absorb_relu(nxt.output[0], consumed, outs):
                act = "relu"
        elif nxt is not None and (nxt.op_type in _ACTS or _clip_act(nxt, g.consts)):
            act = _ACTS.get(nxt.op_type) or _clip_act(nxt, g.consts)
            consumed.add(j)
            outs.append(nxt.output[0])
        elif hswish is not None:
            act = "hardswish"
            consumed.update(hswish)
            outs.append(g.nodes[hswish[1]].output[0])
    return KernelSig("conv", x[1], w[0], (int(k[0]), int(k[1])),
                     tuple(int(s) for s in _attr(n, "strides", [1, 1])),
                     tuple(int(p) for p in _attr(n, "pads", [0, 0, 0, 0])),
                     int(_attr(n, "group", 1)), x[2], x[3], act, residual)


def _act_kernel(g: _Graph, n: onnx.NodeProto, consumed: set[int], outs: list[str]) -> KernelSig | None:
    op = n.op_type
    x = g.shape(n.input[0])
    c, h, w = _flat(x)
    if op in ("HardSigmoid", "Sigmoid"):
        pair = g.swish_of(n.input[0], (op,))
        if pair is not None and g.nodes[pair[0]] is n:
            consumed.add(pair[1])
            outs.append(g.nodes[pair[1]].output[0])
            return KernelSig("act", c, c, h=h, w=w, act="hardswish" if op == "HardSigmoid" else "silu")
    if op == "QuickGelu":  # x * sigmoid(alpha * x): SiLU/swish when alpha is 1
        alpha = float(_attr(n, "alpha", 1.702))
        return KernelSig("act", c, c, h=h, w=w, act="silu" if alpha == 1.0 else f"quickgelu{alpha:g}")
    act = _STANDALONE_ACTS.get(op) or _clip_act(n, g.consts)
    return KernelSig("act", c, c, h=h, w=w, act=act) if act else None


def _blocked(g: _Graph, tensor: str) -> bool:
    """Does the NCHWc pass (level 'all') leave ``tensor`` in its blocked layout? A
    convolution's output is (with an activation fused into it too)."""
    p = g.produced_at.get(tensor)
    node = g.nodes[p] if p is not None else None
    if node is None:
        return False
    if node.op_type in ("Conv", "FusedConv"):
        return True
    src = g.produced_at.get(node.input[0]) if node.input else None
    if node.op_type in _ACTS or _clip_act(node, g.consts):  # fused into the convolution before it
        return (src is not None and g.nodes[src].op_type in ("Conv", "FusedConv")
                and g.only_consumer(node.input[0]) == p)
    # a pooling's output is blocked too when its channels are a multiple of the block; a
    # kernel structure must not depend on channel counts (every plan of a model shares
    # its templates), so a batch norm after a pooling stays a batch-norm kernel here
    return False


def _other_kernel(g: _Graph, n: onnx.NodeProto, consumed: set[int], outs: list[str]) -> KernelSig | None:
    """Every kernel but a convolution; None for an operator the latency model lacks."""
    op = n.op_type
    if op not in _OTHER_OPS:
        return None
    x = g.shape(n.input[0])
    if op == "Add":
        act = "relu" if g.absorb_relu(n.output[0], consumed, outs) else "none"
        return KernelSig("add", x[1], x[1], h=_hw(x)[0], w=_hw(x)[1], act=act)
    if op in ("MaxPool", "AveragePool"):
        return KernelSig("maxpool" if op == "MaxPool" else "avgpool", x[1], x[1],
                         tuple(int(v) for v in _attr(n, "kernel_shape")),
                         tuple(int(v) for v in _attr(n, "strides", [1, 1])),
                         tuple(int(v) for v in _attr(n, "pads", [0, 0, 0, 0])), 1, x[2], x[3])
    if op == "GlobalAveragePool":
        return KernelSig("gap", x[1], x[1], h=x[2], w=x[3])
    if op in ("Flatten", "Reshape", "Squeeze"):
        if len(x) == 5:  # the second reshape of a channel shuffle
            c, h, w = _flat(x)
            return KernelSig("flatten", c, c, h=h, w=w)
        return KernelSig("flatten", x[1], x[1], h=_hw(x)[0], w=_hw(x)[1])
    if op in ("Gemm", "MatMul") and n.input[1] in g.inits:
        w = g.inits[n.input[1]]
        trans_b = int(_attr(n, "transB", 0)) if op == "Gemm" else 0
        return KernelSig("gemm", x[-1], w[0] if trans_b else w[-1], h=1, w=1)
    if op == "FusedGemm" and n.input[1] in g.inits:  # Gemm + activation (onnxruntime's fusion)
        w = g.inits[n.input[1]]
        return KernelSig("gemm", x[-1], w[0] if int(_attr(n, "transB", 0)) else w[-1], h=1, w=1,
                         act=_act_name(n))
    if op == "ConvTranspose" and len(x) == 4:
        wt = g.shape(n.input[1])
        groups = int(_attr(n, "group", 1))
        k = tuple(int(v) for v in _attr(n, "kernel_shape", wt[2:]))
        return KernelSig("deconv", x[1], wt[1] * groups, k, tuple(int(s) for s in _attr(n, "strides", [1, 1])),
                         tuple(int(p) for p in _attr(n, "pads", [0, 0, 0, 0])), groups, x[2], x[3])
    y = g.shape(n.output[0])
    if op == "Concat":
        c, h, w = _flat(y)
        return KernelSig("concat", c, c, groups=len([t for t in n.input if t]), h=h, w=w)
    if op == "Split":
        c, h, w = _flat(x)
        return KernelSig("split", c, _flat(y)[0], groups=len(n.output), h=h, w=w)
    if op == "Slice":
        c, h, w = _flat(x)
        return KernelSig("slice", c, _flat(y)[0], h=h, w=w)
    if op == "Mul":
        shapes = [g.shape(t) for t in n.input]
        c, h, w = _flat(y)
        if any(math.prod(s) == math.prod(y) for s in shapes) and any(math.prod(s) < math.prod(y) for s in shapes):
            return KernelSig("scale", c, c, h=h, w=w)  # one operand broadcast: an SE gate, a scalar
        return KernelSig("mul", c, c, h=h, w=w)
    if op == "ReduceMean":
        c, h, w = _flat(x)
        return KernelSig("reducemean", c, _flat(y)[0] if len(y) == len(x) else c, h=h, w=w)
    if op in ("Resize", "Upsample") and len(x) == 4:
        mode = _attr(n, "mode", b"nearest")
        mode = mode.decode() if isinstance(mode, bytes) else str(mode)
        scale = (max(1, round(y[2] / x[2])), max(1, round(y[3] / x[3])))
        return KernelSig(f"resize_{mode}", x[1], y[1], stride=scale, h=x[2], w=x[3])
    if op == "Pad" and len(x) == 4 and len(n.input) > 1 and n.input[1] in g.ints:
        p = g.ints[n.input[1]]
        mode = _attr(n, "mode", b"constant")
        mode = mode.decode() if isinstance(mode, bytes) else str(mode)
        return KernelSig(f"pad_{mode}", x[1], y[1], pads=(p[2], p[3], p[6], p[7]), h=x[2], w=x[3])
    if op == "BatchNormalization":  # one the exporter could not fold into a convolution
        c, h, w = _flat(x)
        if len(x) == 4 and _blocked(g, n.input[0]):
            # at level 'all' the NCHWc pass runs a BN on a blocked tensor as a 1x1
            # depthwise convolution, with a ReLU after it fused
            act = "relu" if g.absorb_relu(n.output[0], consumed, outs) else "none"
            return KernelSig("conv", c, c, groups=c, h=h, w=w, act=act)
        return KernelSig("bn", c, c, h=h, w=w)
    if op in ("Transpose", "Unsqueeze"):
        c, h, w = _flat(x)
        return KernelSig(op.lower(), c, _flat(y)[0], h=h, w=w)
    if op in _STANDALONE_ACTS or op in ("Clip", "QuickGelu"):
        return _act_kernel(g, n, consumed, outs)
    return None


def extract_kernels(data: bytes) -> list[RawKernel]:
    """Kernels of an ONNX model (static shapes) as onnxruntime's CPU provider runs them.

    Raises one ``ConfigError`` listing every operator without a kernel rule, with the
    nodes that use it.
    """
    g = _Graph(data)
    kernels: list[RawKernel] = []
    consumed: set[int] = set()
    unsupported: dict[str, list[str]] = {}
    for i, n in enumerate(g.nodes):
        if i in consumed:
            continue
        outs = [n.output[0]]
        if n.op_type in ("Conv", "FusedConv"):
            rank = len(g.shape(n.input[0]))
            if rank != 4:
                unsupported.setdefault(f"{n.op_type} on rank-{rank} input", []).append(n.name or n.output[0])
                continue
            sig = _conv_kernel(g, i, n, consumed, outs)
        else:
            sig = _other_kernel(g, n, consumed, outs)
            if sig is None:
                unsupported.setdefault(n.op_type, []).append(n.name or n.output[0])
                continue
        kernels.append(RawKernel(n.name or f"{n.op_type}_{i}", sig, tuple(reversed(outs))))
    if unsupported:
        listing = ", ".join(f"{op} (x{len(where)}: {', '.join(repr(w) for w in where[:3])}"
                            f"{' ...' if len(where) > 3 else ''})" for op, where in sorted(unsupported.items()))
        raise ConfigError(f"the latency model does not support these operators yet: {listing}",
                          "the README lists the supported operators; write the layer with those, "
                          "or report the operators above to the hwprune issue tracker")
    return kernels
