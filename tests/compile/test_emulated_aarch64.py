"""The pixel7 (aarch64) library really runs, under qemu user-mode emulation, and agrees
with onnxruntime; the comparison itself can fail."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from hwprune.compile import export_artifact
from hwprune.runtimes.tvm import emulate


@pytest.fixture
def pixel7_artifact(make_run, tmp_path: Path) -> tuple[Path, dict]:
    why = emulate.emulator_available()
    if why:
        pytest.skip(why)
    run = make_run(device="pixel7")
    out = tmp_path / "art"
    return out, export_artifact(run, "pixel7", out)


def _ort(onnx_path: Path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return sess.run(None, {"input": x})[0]


def test_pixel7_export_is_verified_under_emulation(pixel7_artifact) -> None:
    out, meta = pixel7_artifact
    ver = meta["verification"]
    assert ver["status"] == "passed", ver
    assert ver["where"] == "qemu-aarch64 emulation" and ver["reference"] == "onnxruntime"
    assert ver["max_abs_diff_over_scale"] <= 1e-4
    assert meta["measured"] is None                          # no timing under emulation
    assert json.loads((out / "metadata.json").read_text())["verification"] == ver


def test_emulated_outputs_follow_the_input(pixel7_artifact) -> None:
    """Two seeds: each emulated output matches onnxruntime on its own input and not on the
    other's, so the check above cannot pass on a constant or stale output."""
    out, _ = pixel7_artifact
    rng = np.random.default_rng(123)
    xs = [rng.standard_normal((1, 3, 16, 16)).astype("float32") for _ in range(2)]
    got = [emulate.run_emulated(out / "model.so", {"input": x}) for x in xs]
    refs = [_ort(out / "model.onnx", x) for x in xs]
    for k in range(2):
        (y,) = got[k]
        assert y.shape == refs[k].shape == (1, 5) and y.dtype == np.float32
        assert np.max(np.abs(y - refs[k])) / np.max(np.abs(refs[k])) <= 1e-4
        other = refs[1 - k]
        assert np.max(np.abs(y - other)) / np.max(np.abs(other)) > 1e-2   # a wrong reference fails
    assert np.any(got[0][0] != 0)


def test_emulated_failure_is_one_line_compile_error(pixel7_artifact) -> None:
    from hwprune.errors import CompileError

    out, _ = pixel7_artifact
    with pytest.raises(CompileError) as info:  # wrong input shape: the VM rejects it on aarch64
        emulate.run_emulated(out / "model.so", [np.zeros((1, 3, 8, 8), "float32")])
    assert "qemu-aarch64" in str(info.value) and "\n" not in str(info.value)


def test_export_fails_when_emulated_outputs_disagree(make_run, tmp_path: Path, monkeypatch) -> None:
    """The export's comparison rejects a real emulated output shifted by 1e-3 of its scale."""
    from hwprune.errors import CompileError

    why = emulate.emulator_available()
    if why:
        pytest.skip(why)
    real = emulate.run_emulated

    def shifted(lib, inputs, **kw):
        return [y + np.float32(1e-3) * np.max(np.abs(y)) for y in real(lib, inputs, **kw)]

    monkeypatch.setattr(emulate, "run_emulated", shifted)
    out = tmp_path / "art"
    with pytest.raises(CompileError, match="under qemu-aarch64 emulation disagrees with onnxruntime") as info:
        export_artifact(make_run(device="pixel7"), "pixel7", out)
    assert "\n" not in str(info.value)
    assert not out.exists()
