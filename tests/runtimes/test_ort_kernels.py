"""Kernel extraction for the operators beyond convolutions and adds: what onnxruntime
really runs (checked against its optimized graphs), one signature per kernel."""
from __future__ import annotations

from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper
from torch import nn

from hwprune.errors import ConfigError
from hwprune.onnx_export import to_onnx_bytes
from hwprune.runtimes.kernels import OPS, KernelSig
from hwprune.runtimes.ort import channel_block, extract_kernels, optimized_graph
from tests.conformance import models


class _Op(nn.Module):
    def __init__(self, fn, conv: int = 8) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, conv, 3, padding=1)
        self.fn = fn

    def forward(self, x):
        return self.fn(self.conv(x))


def _kernels(module: nn.Module, shape=(1, 4, 8, 8)) -> list[KernelSig]:
    return [k.sig for k in extract_kernels(to_onnx_bytes(module.eval(), shape))]


def test_mlp_head_is_fused_gemm_with_relu():
    sigs = _kernels(models.mnist_cnn(), (1, 1, 28, 28))
    gemms = [s for s in sigs if s.op == "gemm"]
    assert gemms == [KernelSig("gemm", 32 * 7 * 7, 128, act="relu"), KernelSig("gemm", 128, 10)]
    assert [s.op for s in sigs].count("flatten") == 1


@pytest.mark.parametrize("fn,expect", [
    (lambda y: torch.cat([y, y * 2.0], 1)[:, :, :, :],
     [("concat", 16, 16, 2)]),
    (lambda y: F.interpolate(y, scale_factor=2, mode="nearest"), [("resize_nearest", 8, 8, 1)]),
    (lambda y: F.interpolate(y, scale_factor=2, mode="bilinear"), [("resize_linear", 8, 8, 1)]),
    (lambda y: F.pad(y, (1, 2, 1, 2), mode="reflect"), [("pad_reflect", 8, 8, 1)]),
    (lambda y: F.silu(y), [("act", 8, 8, 1)]),
    (lambda y: F.leaky_relu(y + 1.0, 0.2), None),
])
def test_operator_kernels(fn, expect):
    sigs = _kernels(_Op(fn))
    assert sigs[0].op == "conv"
    if expect:
        assert [(s.op, s.cin, s.cout, s.groups) for s in sigs[1:] if s.op not in ("mul", "scale")][-len(expect):] \
            == expect


def test_silu_and_hardswish_names():
    assert _kernels(_Op(F.silu))[1].act == "silu"
    # hard-swish right after a conv runs inside the NCHWc convolution (level 'all')
    sigs = _kernels(_Op(F.hardswish))
    assert len(sigs) == 1 and sigs[0].act == "hardswish"


def test_conv_transpose_and_unfused_batch_norm():
    m = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.ConvTranspose2d(8, 6, 2, stride=2))
    sigs = _kernels(m)
    assert sigs[-1] == KernelSig("deconv", 8, 6, (2, 2), (2, 2), (0, 0, 0, 0), 1, 8, 8)
    assert sigs[-1].out_hw == (16, 16) and sigs[-1].macs == 8 * 8 * 8 * 6 * 4


def test_split_and_shuffle():
    sigs = _kernels(models.shufflenet_v2(), (1, 3, 32, 32))
    ops = Counter(s.op for s in sigs)
    assert ops["split"] == 2 and ops["transpose"] == 4 and ops["concat"] == 4
    split = next(s for s in sigs if s.op == "split")
    assert (split.cin, split.cout, split.groups) == (48, 24, 2)


_POOLS = {"direct": nn.Identity(), "relu6": nn.ReLU6(), "maxpool": nn.MaxPool2d(2), "avgpool": nn.AvgPool2d(2, 2),
          "gap": nn.AdaptiveAvgPool2d(1), "two-pools": nn.Sequential(nn.MaxPool2d(2), nn.AvgPool2d(2))}


@pytest.mark.parametrize("between", list(_POOLS))
@pytest.mark.parametrize("channels", [8, 12, 16, 24, 32, 48])
def test_batch_norm_after_a_convolution_runs_as_one(between, channels):
    """A batch norm on a convolution's output (an activation fused between) is a 1x1
    depthwise convolution in onnxruntime's NCHWc graph, whatever the channel count. After a
    pooling the runtime does that only when the channels are a multiple of its block, so
    our kernel stays a batch norm there for every channel count (a model's kernel structure
    must not depend on its channel counts): the documented approximation, checked here
    against the runtime so that a change of its rule shows."""
    m = nn.Sequential(nn.Conv2d(4, channels, 3, padding=1), nn.ReLU(), _POOLS[between],
                      nn.BatchNorm2d(channels), nn.ReLU())
    with torch.no_grad():
        m[3].running_mean.uniform_(-1, 1)
        m[3].running_var.uniform_(0.5, 2)
    data = to_onnx_bytes(m.eval(), (1, 4, 16, 16))
    ours = Counter(k.sig.op for k in extract_kernels(data))
    runtime = Counter(n.op_type for n in optimized_graph(data, "all").graph.node)
    runtime_convs, runtime_bns = runtime["Conv"] + runtime["FusedConv"], runtime["BatchNormalization"]
    if between in ("direct", "relu6"):
        assert (ours["conv"], ours["bn"]) == (runtime_convs, runtime_bns) == (2, 0), (ours, runtime)
    else:
        assert (ours["conv"], ours["bn"]) == (1, 1), ours
        blocked = channels % channel_block() == 0
        assert (runtime_convs, runtime_bns) == ((2, 0) if blocked else (1, 1)), (runtime, channel_block())


def _from_pooled_bn(conv, producer, weights) -> bool:
    """Is this runtime convolution a batch norm after a pooling (1x1, depthwise)?
    ``kernel_shape`` is optional in ONNX: without it, the weight's shape says."""
    attrs = {a.name: a for a in conv.attribute}
    src = producer.get(conv.input[0])
    kernel = list(attrs["kernel_shape"].ints) if "kernel_shape" in attrs else weights.get(conv.input[1], [])[2:]
    return (src is not None and src.op_type in ("MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool")
            and "group" in attrs and attrs["group"].i > 1 and kernel == [1, 1])


@pytest.mark.parametrize("name,shape", [("mobilenetv3_small", (1, 3, 32, 32)), ("efficientnet_mbconv", (1, 3, 32, 32)),
                                        ("vgg_mlp", (1, 3, 32, 32)), ("densenet", (1, 3, 32, 32))])
def test_fused_activations_match_the_runtime(name, shape):
    """Every activation the all-level graph fuses into a convolution (or a Gemm) is the act
    of one of our kernels, and no standalone activation kernel is one it fused."""
    data = to_onnx_bytes(getattr(models, name)().eval(), shape)
    ours = Counter((k.sig.op, k.sig.act) for k in extract_kernels(data))
    graph = optimized_graph(data, "all").graph
    runtime = graph.node
    producer = {o: n for n in runtime for o in n.output}
    weights = {w.name: list(w.dims) for w in graph.initializer}
    fused = Counter()
    for n in runtime:
        act = next((a.s.decode() for a in n.attribute if a.name == "activation"), None)
        if n.op_type in ("Conv", "FusedConv") and act and _from_pooled_bn(n, producer, weights):
            continue  # a batch norm after a pooling, blocked when its channels fill the block (see above)
        if n.op_type in ("Conv", "FusedConv") and act:
            fused[("conv", act.lower())] += 1
        elif n.op_type == "FusedGemm":
            fused[("gemm", act.lower())] += 1
    for (op, act), count in fused.items():
        assert ours[(op, act)] >= count, (op, act, ours)
    standalone = Counter(n.op_type for n in runtime if n.op_type in ("QuickGelu", "Sigmoid", "HardSigmoid"))
    assert ours[("act", "silu")] == standalone["QuickGelu"]


def test_unsupported_operators_name_their_nodes():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])
    g = helper.make_graph([helper.make_node("Softsign", ["x"], ["t"], name="block/soft"),
                           helper.make_node("Softplus", ["t"], ["u"], name="block/plus1"),
                           helper.make_node("Softplus", ["u"], ["y"], name="block/plus2")], "g", [x], [y])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    with pytest.raises(ConfigError) as err:
        extract_kernels(m.SerializeToString())
    text = str(err.value)
    assert "Softplus (x2: 'block/plus1', 'block/plus2')" in text and "Softsign (x1: 'block/soft')" in text
    assert "\n" not in text


def test_new_ops_are_known_kinds():
    for name in ("vgg_mlp", "unet", "shufflenet_v2", "mobilenetv3_small", "input_attr", "densenet"):
        shape = models.SHAPES[name] or models.InputAttr.input_shape
        for s in _kernels(getattr(models, name)(), shape):
            assert s.op in OPS, s.op
            assert KernelSig.from_key(s.key) == s
