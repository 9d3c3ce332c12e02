"""hwprune.runtimes.tvm.schedule: every rule compiles, matches onnxruntime, is reported."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tvm")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from hwprune.onnx_export import to_onnx_bytes  # noqa: E402
from hwprune.runtimes.tvm import schedule as S  # noqa: E402

TARGET = {"kind": "llvm", "mcpu": "native", "num-cores": 1}


def _avx2_runs_here() -> bool:
    import platform
    from pathlib import Path
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return platform.machine() == "x86_64" and " avx2" in flags and " fma" in flags


# the host's own vector width, and AVX2 (16 registers: a two-register channel tile) where
# this CPU runs AVX2 code but is not itself an AVX2-only CPU
TARGETS = [TARGET] + ([{"kind": "llvm", "mcpu": "haswell", "num-cores": 1}] if _avx2_runs_here() else [])


def _check(model: nn.Module, shape: tuple[int, ...], target: dict | None = None) -> dict[str, str]:
    """Compile with the CPU build (schedule library), compare with onnxruntime, return the rule report."""
    from hwprune.runtimes import tvm as tvmc
    torch.manual_seed(0)
    model = model.eval()
    for m in model.modules():  # non-trivial batchnorm statistics, folded by the export
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    onnx_bytes = to_onnx_bytes(model, shape)
    exe = tvmc.build(tvmc.import_onnx(onnx_bytes), tvmc.resolve_target(target or TARGET))
    report = tvmc.last_schedule_report()
    vm, dev = tvmc.load_vm(exe)
    x = np.random.default_rng(0).standard_normal(shape).astype("float32")
    got = tvmc.run_vm(vm, dev, [x])[0]
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(onnx_bytes, so, providers=["CPUExecutionProvider"])
    ref = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    assert got.shape == ref.shape
    scale = max(1e-6, float(np.abs(ref).max()))
    assert float(np.abs(got - ref).max()) / scale <= 1e-4, report
    return report


def _rules(report: dict[str, str]) -> set[str]:
    return {v for k, v in report.items() if not k.startswith("_")}


class ConvBNAct(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, stride: int, groups: int = 1,
                 act: str = "relu", residual: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act, self.residual = act, residual

    def forward(self, x):
        y = self.bn(self.conv(x))
        if self.residual:
            y = y + x
        if self.act == "relu":
            y = torch.relu(y)
        elif self.act == "relu6":
            y = torch.clamp(y, 0.0, 6.0)
        elif self.act == "hardswish":
            y = nn.functional.hardswish(y)
        elif self.act == "silu":
            y = y * torch.sigmoid(y)
        return y


# --------------------------------------------------------------------------- lanes

@pytest.mark.parametrize("target,lanes", [
    ({"kind": "llvm", "mcpu": "skylake-avx512"}, 16),
    ({"kind": "llvm", "mcpu": "sapphirerapids"}, 16),
    ({"kind": "llvm", "mcpu": "znver4"}, 16),
    ({"kind": "llvm", "mattr": ["+avx512f"]}, 16),
    ({"kind": "llvm", "mcpu": "haswell"}, 8),
    ({"kind": "llvm", "mattr": ["+avx2", "+fma"]}, 8),
    ({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a76"}, 4),
    ({"kind": "llvm", "mattr": ["+neon"]}, 4),
    ({"kind": "llvm"}, 4),
])
def test_vector_lanes(target, lanes):
    assert S.vector_lanes(target) == lanes


def test_import_does_not_load_tvm():
    import subprocess
    import sys
    code = ("import sys, hwprune.runtimes.tvm.schedule as s; "
            "assert 'tvm' not in sys.modules, 'tvm imported at module load'")
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------- conv2d

@pytest.mark.parametrize("cin,cout,k,stride,size", [
    (16, 16, 3, 1, 14),     # multiple of the lanes
    (8, 13, 3, 1, 10),      # fewer channels than lanes, not a multiple
    (16, 56, 3, 2, 15),     # not a multiple of 16, stride 2, odd size
    (24, 100, 1, 1, 12),    # 1x1
    (3, 16, 7, 2, 32),      # 7x7 stride 2 stem
    (32, 40, 1, 1, 7),      # narrow image: rows x columns tile
    (20, 24, 3, 1, 5),      # narrow + tail rows
    (24, 40, 3, 1, 14),     # AVX2: 2x8-lane channel tile padded, column tile of 4 with a tail
    (96, 40, 1, 1, 7),      # many input channels on a narrow image: chunks of 32 outermost
    (128, 24, 3, 1, 14),    # chunks of 32 over a column-tiled image
    (64, 8, 3, 2, 20),      # AVX2: channels in one register, 6-8 columns, ragged tail
])
@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t["mcpu"])
def test_conv2d_matches_onnxruntime(cin, cout, k, stride, size, target):
    report = _check(ConvBNAct(cin, cout, k, stride), (1, cin, size, size), target)
    assert "conv2d" in _rules(report)
    assert "fallback" not in _rules(report), report


def test_conv2d_relu6_and_residual_epilogue():
    model = nn.Sequential(ConvBNAct(16, 16, 3, 1, act="relu6"),
                          ConvBNAct(16, 16, 3, 1, residual=True))
    report = _check(model, (1, 16, 12, 12))
    assert _rules(report) <= {"conv2d", "elementwise"}, report


@pytest.mark.parametrize("act,groups", [("hardswish", 1), ("silu", 1), ("hardswish", 24)])
def test_epilogue_reading_the_conv_twice_is_scheduled(act, groups):
    """hard-swish (y * clip(y + 3, 0, 6) / 6) and SiLU (y * sigmoid(y)) read the conv's
    output twice: the epilogue branches and joins, and is still fused into the rule."""
    report = _check(ConvBNAct(24, 24, 3, 2, groups=groups, act=act), (1, 24, 20, 20))
    assert _rules(report) <= {"conv2d", "depthwise"} and "fallback" not in _rules(report), report


@pytest.mark.parametrize("channels,stride,size", [(16, 1, 14), (13, 2, 15), (32, 2, 28)])
def test_depthwise_matches_onnxruntime(channels, stride, size):
    model = ConvBNAct(channels, channels, 3, stride, groups=channels, act="relu6")
    report = _check(model, (1, channels, size, size))
    assert "depthwise" in _rules(report), report


def test_grouped_conv_matches_onnxruntime():
    report = _check(ConvBNAct(24, 40, 3, 1, groups=4), (1, 24, 11, 11))
    assert "grouped_conv2d" in _rules(report), report


# --------------------------------------------------------------------------- dense, pool

@pytest.mark.parametrize("features,relu", [(10, False), (16, True), (100, False), (20, True), (1000, False)])
def test_dense_and_pooling(features, relu):
    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            self.pool = nn.MaxPool2d(3, 2, 1)
            self.avg = nn.AvgPool2d(2)
            self.fc = nn.Linear(24, features)

        def forward(self, x):
            x = self.avg(self.pool(x)).mean((2, 3))
            y = self.fc(x)
            return torch.relu(y) if relu else y

    report = _check(Head(), (1, 24, 14, 14))
    rules = _rules(report)
    assert "dense" in rules and "pool" in rules, report
    assert "fallback" not in rules, report


# --------------------------------------------------------------------------- fallback

def test_unmatched_function_falls_back_and_stays_correct():
    class Gated(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(8, 16, 3, 1, 1)

        def forward(self, x):
            y = self.conv(x)
            return torch.softmax(y.flatten(1), dim=1)

    report = _check(Gated(), (1, 8, 6, 6))
    assert "conv2d" in _rules(report)
    assert "fallback" in _rules(report), report


def test_schedule_module_does_not_mutate_input():
    import tvm
    from tvm import relax

    from hwprune.runtimes import tvm as tvmc
    onnx_bytes = to_onnx_bytes(ConvBNAct(8, 16, 3, 1).eval(), (1, 8, 8, 8))
    mod = relax.get_pipeline("zero")(tvmc.import_onnx(onnx_bytes))
    before = mod.script(show_meta=True)
    target = tvmc.resolve_target(TARGET)
    new, report = S.schedule_module(mod, target)
    assert mod.script(show_meta=True) == before
    assert new.script(show_meta=True) != before
    assert set(k for k in report if not k.startswith("_")) == {
        gv.name_hint for gv, f in mod.functions_items() if isinstance(f, tvm.tirx.PrimFunc)}
