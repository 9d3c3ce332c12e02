from __future__ import annotations

import pytest
from onnx import TensorProto, helper

from hwprune.pruning import analyze
from hwprune.errors import ConfigError
from hwprune.runtimes.ort import extract_kernels, optimized_graph
from hwprune.latency._micro import micro_model
from hwprune.runtimes.kernels import KernelSig
from hwprune.models import load_model


@pytest.mark.parametrize("name,shape", [("resnet18", "1x3x64x64"), ("mobilenet_v2", "1x3x64x64"),
                                        ("resnet20", None)])
def test_residual_fusion_matches_runtime(name, shape):
    a = analyze(load_model(name, input_shape=shape))
    ours = sum(t.base.residual for t in a.templates)
    runtime = optimized_graph(a.cost.onnx_models[0], "all")
    fused = sum(1 for n in runtime.graph.node
                if n.op_type == "Conv" and len(n.input) >= 4 and n.input[3])
    convs = sum(1 for n in runtime.graph.node if n.op_type == "Conv")
    assert ours == fused
    assert sum(t.base.op == "conv" for t in a.templates) == convs


def test_bn_and_activation_are_folded_into_conv():
    a = analyze(load_model("mobilenet_v2", input_shape="1x3x64x64"))
    ops = {t.base.op for t in a.templates}
    assert ops <= {"conv", "gap", "flatten", "gemm"}
    acts = {t.base.act for t in a.templates if t.base.op == "conv"}
    assert acts == {"relu6", "none"}
    dw = [t for t in a.templates if t.base.groups > 1]
    assert dw and all(t.base.groups == t.base.cin == t.base.cout for t in dw)
    # a depthwise kernel's channels and groups follow one pruning group
    assert all(len(t.groups_used) == 1 for t in dw)


@pytest.mark.parametrize("sig", [
    KernelSig("conv", 24, 40, (3, 3), (2, 2), (1, 1, 1, 1), 1, 17, 17, "relu", True),
    KernelSig("conv", 48, 48, (3, 3), (1, 1), (1, 1, 1, 1), 48, 14, 14, "relu6"),
    KernelSig("conv", 16, 8, (1, 1), (1, 1), (0, 0, 0, 0), 1, 9, 9, "none"),
    KernelSig("gemm", 100, 10), KernelSig("gap", 32, 32, h=7, w=7),
    KernelSig("maxpool", 8, 8, (3, 3), (2, 2), (1, 1, 1, 1), 1, 20, 20),
    KernelSig("add", 8, 8, h=5, w=5, act="relu"),
])
def test_micro_model_is_the_kernel_it_times(sig):
    kernels = extract_kernels(micro_model(sig))
    assert [k.sig for k in kernels] == [sig]


def test_every_kernel_of_user_style_models_has_its_micro_model():
    """Runners that cannot profile whole models (TVM, RPC) time each kernel alone: every
    kernel the conformance architectures run (concatenations, SE gates, BatchNorm, resize,
    pad, split, transpose, SiLU...) must become a one-kernel model of exactly itself."""
    from hwprune.onnx_export import to_onnx_bytes
    from tests.conformance.models import SHAPES

    sigs = {}
    for name, shape in SHAPES.items():
        if name != "channel_mean_gate":
            lm = load_model(f"tests/conformance/models.py:{name}", input_shape=shape)
            sigs.update((k.sig.key, k.sig) for k in extract_kernels(to_onnx_bytes(lm.model, lm.input_shape)))
    ops = {s.op for s in sigs.values()}
    assert {"concat", "scale", "bn", "split", "transpose", "deconv", "reducemean"} <= ops
    for sig in sigs.values():
        assert [k.sig for k in extract_kernels(micro_model(sig))] == [sig], sig.key


def test_unsupported_ops_are_listed_at_once():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])
    g = helper.make_graph([helper.make_node("Softsign", ["x"], ["t"]),
                           helper.make_node("Softplus", ["t"], ["y"])], "g", [x], [y])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    with pytest.raises(ConfigError, match="Softplus.*Softsign"):
        extract_kernels(m.SerializeToString())


def test_signature_key_roundtrip():
    s = KernelSig("conv", 64, 128, (3, 3), (2, 2), (1, 1, 1, 1), 1, 56, 56, "relu", True)
    assert KernelSig.from_key(s.key) == s
    assert s.out_hw == (28, 28)
    assert s.macs == 28 * 28 * 128 * 64 * 9
