"""Reading a run directory never imports code the run directory names: whoever can write a
shared run folder must not run code as whoever loads it."""
from __future__ import annotations

import hashlib
import json

import pytest
import torch

from hwprune.cli import main
from hwprune.errors import ConfigError
from hwprune.search import load_pruned

NET = """import torch.nn as nn
{side_effect}
def make():
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4))
"""


def _run_for(tmp_path, name: str, spec: str, lm, sha256: str | None = None):
    """A finished run of ``lm`` pruned to half width whose summary names ``spec``."""
    from hwprune.onnx_export import to_onnx_bytes
    from hwprune.pruning import PruningSpace
    from hwprune.rundir import RunDir, RunSummary

    space = PruningSpace(lm)
    plan = space.uniform_plan(0.5)
    model = space.apply(plan)
    run = RunDir(tmp_path / name)
    run.mark_running()
    run.write_plan(plan)
    run.write_model(model)
    run.write_onnx(to_onnx_bytes(model, lm.input_shape))
    record = {"spec": spec, "input_shape": list(lm.input_shape), **({"sha256": sha256} if sha256 else {})}
    run.finish(RunSummary(device="host", files=["plan.json", "model.pt", "model.onnx"], model=record))
    return run.path, model


@pytest.fixture
def runs(tmp_path):
    from hwprune.models import load_model

    marker = tmp_path / "MARKER"
    evil = tmp_path / "evil.py"
    evil.write_text(NET.format(side_effect=f"open({str(marker)!r}, 'w').write('imported')"))
    good = tmp_path / "net.py"
    good.write_text(NET.format(side_effect=""))
    lm = load_model(f"{good}:make", input_shape="1x1x8x8")
    evil_run, _ = _run_for(tmp_path, "evil-run", f"{evil}:make", lm)
    from hwprune.rundir import model_file_sha256

    digest = model_file_sha256(f"{good}:make")  # what a search records for a user model file
    assert digest == hashlib.sha256(good.read_bytes()).hexdigest()
    assert model_file_sha256("resnet18") is None and model_file_sha256(f"{tmp_path}/none.py:make") is None
    good_run, model = _run_for(tmp_path, "good-run", f"{good}:make", lm, sha256=digest)
    return {"marker": marker, "evil": evil, "good": good, "evil_run": evil_run, "good_run": good_run,
            "model": model}


def test_load_pruned_refuses_to_import_the_model_a_run_names(runs):
    with pytest.raises(ConfigError, match="does not import code a run directory names"):
        load_pruned(runs["evil_run"])
    assert not runs["marker"].exists()


def test_a_model_file_that_differs_from_the_recorded_hash_is_refused_before_import(runs):
    with pytest.raises(ConfigError, match="is not the one run"):
        load_pruned(runs["good_run"], model=f"{runs['evil']}:make")
    assert not runs["marker"].exists()


def test_the_caller_names_the_user_model(runs):
    model = load_pruned(runs["good_run"], model=f"{runs['good']}:make")
    x = torch.randn(1, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(model(x), runs["model"](x))


def test_a_zoo_run_needs_nothing_more(tmp_path):
    from hwprune.models import load_model

    path, model = _run_for(tmp_path, "zoo-run", "resnet20", load_model("resnet20", pretrained=False))
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(load_pruned(path)(x), model(x))


def test_no_command_imports_the_model_a_run_names(runs, tmp_path, capsys):
    """Every command that takes a run directory or a file from one (export; latency and
    prune with its plan) is run on it; none imports the model file it names."""
    plan = str(runs["evil_run"] / "plan.json")
    for argv in (["export", str(runs["evil_run"]), "--device", "nosuch"],
                 ["export", str(runs["evil_run"]), "--out", str(tmp_path / "evil.py")],
                 ["latency", "--device", "host", "--model", "demo", "--plan", plan],
                 ["prune", "--model", "demo", "--plan", plan, "--out", str(tmp_path / "p")]):
        assert main(argv) != 0
        assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not runs["marker"].exists()
    assert json.loads((runs["evil_run"] / "summary.json").read_text())["status"] == "finished"


@pytest.mark.slow
def test_export_of_a_user_model_run_compiles_without_importing_it(runs, tmp_path):
    pytest.importorskip("tvm")
    assert main(["export", str(runs["evil_run"]), "--device", "host", "--out", str(tmp_path / "art"),
                 "--no-verify", "--allow-slower"]) == 0
    assert not runs["marker"].exists()
