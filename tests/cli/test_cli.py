from __future__ import annotations

import json
import subprocess
import sys

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
    for f in ("plan.json", "model.pt", "model.onnx", "model_state_dict.pt"):
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
