from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hwprune.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(code, err, *needles):
    assert code != 0
    lines = [l for l in err.strip().splitlines() if l.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], (n, lines[0])


def test_models_json(capsys):
    code, out, _ = run(capsys, "models", "--format", "json")
    rows = json.loads(out)
    assert code == 0
    names = {r["name"] for r in rows}
    assert {"demo", "resnet18", "resnet50", "mobilenet_v2", "resnet20", "resnet56", "mobilenet_v1"} <= names
    r18 = next(r for r in rows if r["name"] == "resnet18")
    assert r18["params"] == 11689512 and r18["macs"] == 1814073344


def test_prune_writes_model_and_plan(tmp_path, capsys):
    code, out, _ = run(capsys, "prune", "--model", "resnet20", "--ratio", "0.5", "--out", str(tmp_path),
                       "--format", "json")
    assert code == 0
    res = json.loads(out)
    assert res["after"]["params"] < res["before"]["params"]
    assert res["onnx_check_rel_diff"] <= 1e-4
    for f in ("plan.json", "model.pt2", "model.onnx", "model_state_dict.pt"):
        assert (tmp_path / f).is_file()
    # the plan reproduces the same pruned model
    code, out2, _ = run(capsys, "prune", "--model", "resnet20", "--plan", str(tmp_path / "plan.json"),
                        "--out", str(tmp_path / "again"), "--format", "json")
    assert json.loads(out2)["after"] == res["after"]


@pytest.mark.parametrize("argv,needles", [
    (["prune", "--model", "resnet20", "--ratio", "1.2", "--out", "X"], ["ratio", "1.2"]),
    (["prune", "--model", "resnet20", "--ratio", "-0.1", "--out", "X"], ["ratio"]),
    (["prune", "--model", "nosuch.py:make", "--ratio", "0.3", "--out", "X"], ["nosuch.py", "does not exist"]),
    (["prune", "--model", "resnet99", "--ratio", "0.3", "--out", "X"], ["unknown model 'resnet99'", "resnet18"]),
    (["latency", "--device", "pixle7", "--model", "resnet18"], ["unknown device 'pixle7'", "pixel7"]),
])
def test_bad_input_one_line(tmp_path, capsys, argv, needles):
    argv = [a if a != "X" else str(tmp_path / "o") for a in argv]
    code, _, err = run(capsys, *argv)
    _one_line_error(code, err, *needles)


def test_user_model_errors(tmp_path, capsys):
    f = tmp_path / "net.py"
    f.write_text("import torch.nn as nn\n"
                 "def make():\n    return nn.Sequential(nn.Conv2d(3, 16, 3), nn.BatchNorm2d(16), nn.ReLU(),"
                 " nn.Conv2d(16, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))\n")
    code, _, err = run(capsys, "prune", "--model", f"{f}:nope", "--input-shape", "1x3x16x16",
                       "--ratio", "0.3", "--out", str(tmp_path / "o"))
    _one_line_error(code, err, "no factory 'nope'")
    code, _, err = run(capsys, "prune", "--model", f"{f}:make", "--ratio", "0.3", "--out", str(tmp_path / "o"))
    _one_line_error(code, err, "--input-shape")
    import torch
    torch.save({"bad": torch.zeros(3)}, tmp_path / "w.pt")
    code, _, err = run(capsys, "prune", "--model", f"{f}:make", "--input-shape", "1x3x16x16",
                       "--weights", str(tmp_path / "w.pt"), "--ratio", "0.3", "--out", str(tmp_path / "o"))
    _one_line_error(code, err, "do not fit")
    code, out, err = run(capsys, "prune", "--model", f"{f}:make", "--input-shape", "1x3x16x16",
                         "--ratio", "0.5", "--out", str(tmp_path / "o"), "--format", "json")
    assert code == 0, err
    assert json.loads(out)["after"]["params"] < json.loads(out)["before"]["params"]


def test_plan_for_another_model_and_unknown_group(tmp_path, capsys):
    assert run(capsys, "prune", "--model", "resnet56", "--ratio", "0.3", "--out", str(tmp_path / "a"))[0] == 0
    code, _, err = run(capsys, "prune", "--model", "resnet20", "--plan", str(tmp_path / "a" / "plan.json"),
                       "--out", str(tmp_path / "b"))
    _one_line_error(code, err, "resnet56")
    doc = json.loads((tmp_path / "a" / "plan.json").read_text())
    doc["model_id"] = "resnet20"
    doc["groups"] = {"layer9.conv": {"keep": 4, "dense": 16}}
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    code, _, err = run(capsys, "prune", "--model", "resnet20", "--plan", str(tmp_path / "bad.json"),
                       "--out", str(tmp_path / "c"))
    _one_line_error(code, err, "layer9.conv")


def test_process_exit_code_and_no_traceback():
    p = subprocess.run([sys.executable, "-m", "hwprune", "latency", "--device", "nosuch", "--model", "demo"],
                       capture_output=True, text=True)
    assert p.returncode == 1
    assert p.stderr.strip().count("\n") == 0 and "Traceback" not in p.stderr
    p = subprocess.run([sys.executable, "-m", "hwprune", "prune", "--model", "demo", "--ratio", "abc",
                        "--out", "x"], capture_output=True, text=True)
    assert p.returncode == 2 and p.stderr.strip().count("\n") == 0


@pytest.fixture(scope="module")
def demo_tables(tmp_path_factory):
    """A host table for the demo measured here and now (the shipped one may be another CPU's)."""
    from hwprune.pruning import analyze
    from hwprune.devices import LocalRunner
    from hwprune.runtimes.timing import TimingProtocol
    from hwprune.latency._profiler import profile_model
    from hwprune.latency._table import LatencyTable
    from hwprune.models import load_model

    d = tmp_path_factory.mktemp("tables")
    profile_model(analyze(load_model("demo")), LatencyTable.load(d, "host", create=True),
                  LocalRunner(protocol=TimingProtocol(warmup=2, repeats=5, min_time_s=0.0)),
                  progress=False)
    return str(d)


@pytest.mark.parametrize("argv,needles", [
    (["--device", "host", "--latency", "-5ms"], ["-5ms", "positive"]),
    (["--device", "host", "--latency", "fast"], ["'fast'", "20ms"]),
    (["--device", "host", "--latency", "20"], ["'20'"]),
    (["--device", "nosuch", "--latency", "50%"], ["unknown device 'nosuch'", "pixel7"]),
    (["--device", "host", "--memory", "1KB"], ["1KB", "smallest reachable"]),
    (["--device", "host", "--latency", "0.001ms"], ["0.001ms", "fastest reachable"]),
])
def test_search_budget_errors(tmp_path, capsys, demo_tables, argv, needles):
    code, _, err = run(capsys, "search", *argv, "--tables", demo_tables, "--run-dir", str(tmp_path / "r"))
    _one_line_error(code, err, *needles)
    assert not (tmp_path / "r" / "summary.json").exists()


def test_prune_user_cnn_never_pickles_its_class(tmp_path, capsys):
    """The MNIST CNN of the issue: a user class with an MLP head (Gemm + ReLU is fused by
    onnxruntime), its weights, and outputs that load without the user's code."""
    import shutil
    import subprocess
    import sys

    import torch

    from tests.conformance.models import CNN

    src = Path(__file__).parents[1] / "conformance" / "models.py"
    f = tmp_path / "user.py"
    shutil.copy(src, f)
    torch.manual_seed(0)
    torch.save(CNN().state_dict(), tmp_path / "w.pth")
    out = tmp_path / "out"
    code, text, err = run(capsys, "prune", "--model", f"{f}:mnist_cnn", "--weights", str(tmp_path / "w.pth"),
                          "--input-shape", "1x1x28x28", "--ratio", "0.5", "--out", str(out))
    assert code == 0, err
    assert "model.pt2" in text and "rebuild_pruned" in text and "weights only" in text
    assert not (out / "model.pt").exists()
    # nothing in the state_dict needs the user's class; the program runs without user.py
    torch.load(out / "model_state_dict.pt", weights_only=True)
    probe = ("import torch; m = torch.export.load('model.pt2').module(); "
             "print(tuple(m(torch.zeros(1, 1, 28, 28)).shape))")
    p = subprocess.run([sys.executable, "-c", probe], cwd=out, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.strip() == "(1, 10)"
    # the module rebuilt from spec + plan + state_dict is the one that was written
    from hwprune.pruning import rebuild_pruned

    m = rebuild_pruned(f"{f}:mnist_cnn", out / "plan.json", out / "model_state_dict.pt")
    ep = torch.export.load(out / "model.pt2").module()
    x = torch.randn(1, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(m(x), ep(x), atol=1e-5)
    assert m.fc[0].out_features < 128


def test_prune_keep_layers(tmp_path, capsys):
    code, out, err = run(capsys, "prune", "--model", "resnet20", "--keep-layers", "conv1,layer3",
                         "--ratio", "0.5", "--out", str(tmp_path), "--format", "json")
    assert code == 0, err
    res = json.loads(out)
    assert res["keep_layers"] == ["conv1", "layer3"]
    assert not any(g.startswith("layer3") or g == "conv1" for g in res["groups"])
    assert json.loads((tmp_path / "plan.json").read_text())["meta"]["keep_layers"] == ["conv1", "layer3"]
    code, _, err = run(capsys, "prune", "--model", "resnet20", "--keep-layers", "layer9",
                       "--ratio", "0.5", "--out", str(tmp_path / "x"))
    _one_line_error(code, err, "layer9")


def test_json_errors_are_json_objects(capsys):
    code, out, err = run(capsys, "latency", "--device", "nosuch", "--model", "demo", "--format", "json")
    assert code == 1 and len(err.strip().splitlines()) == 1
    doc = json.loads(out)
    assert doc["type"] == "DeviceError" and "unknown device 'nosuch'" in doc["error"] and doc["hint"]


def test_a_budget_the_dense_model_meets_is_called_out():
    from hwprune.search import Budget
    from hwprune.search._steps import _loose_budget

    notes = _loose_budget(Budget(latency_ms=20.0), dense_ms=1.3, dense_bytes=10_000_000)
    assert len(notes) == 1 and "15.4x the dense model's predicted 1.3 ms" in notes[0]
    assert _loose_budget(Budget(latency_ms=0.5, memory_bytes=1_000), dense_ms=1.3, dense_bytes=10_000_000) == []
