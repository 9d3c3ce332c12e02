"""export_artifact: host verification against onnxruntime, cross/GPU libraries, clean failures."""
from __future__ import annotations

import hashlib
import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from hwprune.compile import SlowerThanPredictedError, export_artifact
from hwprune.runtimes import tvm as _tvm
from hwprune.errors import CompileError, ConfigError, HwpruneError, MissingDependencyError

EM_AARCH64 = 183


def _elf_machine(path: Path) -> int:
    head = path.read_bytes()[:20]
    assert head[:4] == b"\x7fELF", f"{path.name} is not an ELF file"
    return struct.unpack_from("<H", head, 18)[0]


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_importing_compile_does_not_import_tvm() -> None:
    code = "import sys, hwprune.compile, hwprune.devices._tvm_runner; print('tvm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "False"


def test_host_export_matches_onnxruntime(make_run, tmp_path: Path) -> None:
    run = make_run(predicted_latency_ms=1000.0)
    out = tmp_path / "art"
    meta = export_artifact(run, "host", out, repeats=10, warmup=3)

    assert sorted(p.name for p in out.iterdir()) == ["README.md", "metadata.json", "model.onnx",
                                                     "model.so", "plan.json"]
    on_disk = json.loads((out / "metadata.json").read_text())
    assert on_disk["device"] == "host" and on_disk["target"]["kind"] == "llvm"
    assert on_disk["target"]["mcpu"] not in ("native", "generic")   # resolved to the real CPU
    assert on_disk["inputs"] == [{"name": "input", "shape": [1, 3, 16, 16], "dtype": "float32"}]
    assert on_disk["predicted_latency_ms"] == 1000.0
    assert on_disk["accuracy"]["top1"] == 0.5
    assert on_disk["verification"]["status"] == "passed"
    assert on_disk["verification"]["max_abs_diff_over_scale"] <= 1e-4
    assert on_disk["measured"]["tvm_median_ms"] > 0 and on_disk["measured"]["onnxruntime_median_ms"] > 0
    assert "warning" not in meta                       # 1000 ms predicted: far above measured
    for name, digest in on_disk["files"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest
    assert "tvm.runtime.load_module" in (out / "README.md").read_text()

    # Independent check of the shipped library: load it and compare with onnxruntime.
    x = np.random.default_rng(7).standard_normal((1, 3, 16, 16)).astype("float32")
    vm, dev = _tvm.load_vm(out / "model.so")
    got = _tvm.run_vm(vm, dev, [x])[0]
    ref = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"]).run(
        None, {"input": x})[0]
    assert np.max(np.abs(got - ref)) / np.max(np.abs(ref)) <= 1e-4
    assert _leftovers(tmp_path) == []


def test_slower_than_predicted_fails_unless_allowed(make_run, tmp_path: Path) -> None:
    run = make_run(predicted_latency_ms=1e-4)
    with pytest.raises(SlowerThanPredictedError, match="above the 0.000 ms the run predicted") as info:
        export_artifact(run, "host", tmp_path / "art", repeats=5, warmup=2)
    assert "\n" not in str(info.value) and "--allow-slower" in info.value.hint
    assert not (tmp_path / "art").exists() and _leftovers(tmp_path) == []
    meta = export_artifact(run, "host", tmp_path / "art", repeats=5, warmup=2, allow_slower=True)
    assert "above the 0.000 ms the run predicted" in meta["warning"] and "\n" not in meta["warning"]
    m = meta["measured"]
    assert m["deployed_runtime"] == "onnxruntime" and m["deployed_over_predicted"] > 1.1
    # both runtimes timed with one protocol (the standard stopwatch), the faster one named
    assert m["faster_runtime"] == min(("tvm", "onnxruntime"), key=lambda r: m[f"{r}_median_ms"])
    assert m["faster_runtime"] in m["race"]
    # the number held to the prediction is the standard stopwatch's, in a fresh process
    watch = m["stopwatch"]
    assert watch["runtime"] == "onnxruntime" and "fresh process" in watch["protocol"]
    assert watch["median_ms"] == min(watch["readings_ms"])
    assert m["deployed_over_predicted"] == pytest.approx(watch["median_ms"] / 1e-4, rel=1e-3)
    assert len(watch["readings_ms"]) == 5  # a reading over the prediction is confirmed by four more
    # the race: one fresh-process reading of each runtime, the deployed one its first reading
    assert set(watch["race"]) == {"tvm", "onnxruntime"}
    assert m["onnxruntime_median_ms"] == watch["race"]["onnxruntime"]["median_ms"] in watch["readings_ms"]


def test_export_for_another_device_drops_the_runs_prediction(make_run, tmp_path: Path) -> None:
    run = make_run(device="pixel7", predicted_latency_ms=1e-4)   # searched for the phone
    meta = export_artifact(run, "host", tmp_path / "art", repeats=5, warmup=2)
    assert meta["predicted_latency_ms"] is None and meta["searched_for"] == "pixel7"
    assert "searched for 'pixel7'" in meta["warning"]


def test_pixel7_export_is_aarch64_elf(make_run, tmp_path: Path) -> None:
    if shutil.which("aarch64-linux-gnu-gcc") is None:
        pytest.skip("aarch64-linux-gnu-gcc not installed")
    run = make_run(device="pixel7")
    meta = export_artifact(run, None, tmp_path / "art")   # device from the run summary
    lib = tmp_path / "art" / "model.so"
    assert _elf_machine(lib) == EM_AARCH64
    assert meta["target"]["mtriple"] == "aarch64-linux-android"
    assert meta["library"]["linker"] == "aarch64-linux-gnu-gcc"
    assert "NDK" in meta["library"]["note"]               # glibc link, says how to get Android
    # checked under qemu where it is installed (tests/compile/test_emulated_aarch64.py); never timed here
    assert meta["verification"]["status"] in ("skipped", "passed") and meta["measured"] is None


@pytest.mark.parametrize("device", ["jetson-orin-nano", "a100"])
def test_gpu_export_gives_cuda_library_or_one_line_error(make_run, tmp_path: Path, device: str) -> None:
    run = make_run(device=device)
    out = tmp_path / "art"
    try:
        meta = export_artifact(run, device, out)
    except (MissingDependencyError, CompileError) as exc:
        assert "\n" not in str(exc) and exc.hint            # says what to install
        assert not out.exists() and _leftovers(tmp_path) == []
        return
    data = (out / meta["library"]["file"]).read_bytes()
    assert bytes.fromhex("50ed55ba") in data              # an embedded CUDA fatbin
    assert b"__global__" not in data                       # not CUDA source
    assert meta["library"]["cuda"]["arch"] == meta["target"]["arch"]
    if meta["target"].get("host", {}).get("mtriple", "").startswith("aarch64"):
        assert _elf_machine(out / meta["library"]["file"]) == EM_AARCH64


def test_unfinished_run_is_one_line_error(make_run, tmp_path: Path) -> None:
    run = make_run(status="running")
    with pytest.raises(ConfigError, match="status 'running', not 'finished'") as info:
        export_artifact(run, "host", tmp_path / "art")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "art").exists()


def test_run_without_model_is_one_line_error(make_run, tmp_path: Path) -> None:
    run = make_run(files=("plan.json",))
    with pytest.raises(ConfigError, match=r"missing model\.onnx"):
        export_artifact(run, "host", tmp_path / "art")
    with pytest.raises(ConfigError, match="does not exist"):
        export_artifact(tmp_path / "nope", "host", tmp_path / "art")
    assert not (tmp_path / "art").exists()


def test_device_without_target_is_one_line_error(make_run, tmp_path: Path) -> None:
    doc = json.loads((Path(__file__).resolve().parents[2] / "device_profiles" / "host.json").read_text())
    doc.pop("tvm_target")
    doc["name"] = "board"
    profile = tmp_path / "board.json"
    profile.write_text(json.dumps(doc))
    run = make_run()
    with pytest.raises(ConfigError, match="'board' has no compile target") as info:
        export_artifact(run, str(profile), tmp_path / "art")
    assert "pixel7" in str(info.value)                    # names devices that have one
    assert not (tmp_path / "art").exists()


def test_missing_cross_compiler_names_apt_package(make_run, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    run = make_run(device="pixel7")
    bin_dir = tmp_path / "bin"   # a PATH with the usual tools but no aarch64 cross compiler
    bin_dir.mkdir()
    for tool in ("tar", "gcc", "g++", "cc"):
        if shutil.which(tool):
            (bin_dir / tool).symlink_to(shutil.which(tool))
    monkeypatch.setenv("PATH", str(bin_dir))
    with pytest.raises(MissingDependencyError, match="apt-get install gcc-aarch64-linux-gnu") as info:
        export_artifact(run, "pixel7", tmp_path / "art")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "art").exists() and _leftovers(tmp_path) == []

    meta = export_artifact(run, "pixel7", tmp_path / "art", allow_tar=True)   # opt-in fallback
    assert meta["library"]["format"] == "tar" and (tmp_path / "art" / "model.tar").is_file()
    assert "gcc-aarch64-linux-gnu" in meta["warning"]


def test_failed_export_leaves_out_dir_untouched(make_run, tmp_path: Path) -> None:
    run = make_run()
    out = tmp_path / "art"
    export_artifact(run, "host", out, verify=False)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    (run / "model.onnx").write_bytes(b"not an onnx model")
    with pytest.raises(CompileError):
        export_artifact(run, "host", out, overwrite=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert _leftovers(tmp_path) == []
    with pytest.raises(ConfigError, match="already exists"):
        export_artifact(run, "host", out)


def test_errors_are_hwprune_errors(make_run, tmp_path: Path) -> None:
    with pytest.raises(HwpruneError, match="unknown device 'pixle7'"):
        export_artifact(make_run(), "pixle7", tmp_path / "art")
    with pytest.raises(ConfigError, match="tuning is only supported for host"):
        export_artifact(make_run("r2", device="pixel7"), "pixel7", tmp_path / "art", tune_trials=4)


@pytest.mark.slow
def test_tuned_export_shares_database(make_run, tmp_path: Path) -> None:
    run = make_run()
    db = tmp_path / "db"
    first = export_artifact(run, "host", tmp_path / "a1", tune_trials=4, database_dir=db, repeats=10)
    # 4 trials (< 16 per task): only the task with the largest latency share gets them
    assert first["tuning"]["tasks"] > 1 and first["tuning"]["tuned_tasks"] == 1
    assert (tmp_path / "a1" / "tuning_db" / "database_tuning_record.json").stat().st_size > 0
    assert first["verification"]["max_abs_diff_over_scale"] <= 1e-4
    lines = (db / "database_tuning_record.json").read_text().splitlines()
    with_records = len({json.loads(line)[0] for line in lines if line.strip()})
    second = export_artifact(run, "host", tmp_path / "a2", tune_trials=4, database_dir=db, repeats=10)
    assert second["tuning"]["reused_tasks"] == with_records == 1   # decided already: skipped
    assert second["tuning"]["tuned_tasks"] == 1                     # the next largest task
    assert second["tuning"]["decisions"][0]["task"] != first["tuning"]["decisions"][0]["task"]
    assert second["verification"]["max_abs_diff_over_scale"] <= 1e-4
