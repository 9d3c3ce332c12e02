"""RunDir: the summary round trip, the finish protocol and the errors readers see."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from hwprune.errors import ConfigError
from hwprune.pruning import PruningPlan
from hwprune.rundir import FINISHED, RUNNING, RunDir, RunSummary


def _plan() -> PruningPlan:
    return PruningPlan("tiny", (1, 3, 8, 8), {"a": 4}, {"a": 8}, meta={"trial": 3})


def test_summary_round_trips_and_keeps_unknown_keys() -> None:
    doc = {"status": "finished", "device": "host", "predicted_latency_ms": 0.25,
           "accuracy": {"val": 0.9}, "files": ["plan.json"], "from_a_newer_version": [1, 2]}
    s = RunSummary.from_dict(doc)
    assert s.status == FINISHED and s.device == "host" and s.predicted_latency_ms == 0.25
    assert s.extra == {"from_a_newer_version": [1, 2]}
    again = s.to_dict()
    assert {k: again[k] for k in doc} == doc
    assert again["measured_latency_ms"] is None and again["warnings"] == []


def test_create_refuses_a_run_holding_a_study_unless_resumed(tmp_path: Path) -> None:
    (tmp_path / "study.journal").write_text("{}\n")
    with pytest.raises(ConfigError, match="already holds a search.*--resume"):
        RunDir.create(tmp_path)
    assert RunDir.create(tmp_path, resume=True).path == tmp_path
    assert RunDir.create(tmp_path, shared_study=True).path == tmp_path
    assert not RunDir.create(tmp_path / "new").path.exists()   # nothing made on disk yet


def test_finish_writes_summary_last_and_only_when_files_exist(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path / "run")
    running = run.mark_running()
    assert json.loads(run.file("summary.json").read_text())["status"] == RUNNING == running.status
    run.write_plan(_plan())
    model = nn.Linear(3, 2)
    run.write_model(model)
    run.write_onnx(b"onnx bytes")
    with pytest.raises(ConfigError, match="status 'running', not 'finished'"):
        run.require_finished()
    run.write_rows("trials.csv", [{"number": 0, "keep:a": 4}, {"number": 1, "keep:a": 8}])
    summary = RunSummary(device="host", started=running.started,
                         files=["plan.json", "model.pt", "model.onnx", "trials.csv", "trials.png",
                                "summary.md"])
    with pytest.raises(RuntimeError, match="trials.png not written"):
        run.finish(summary, "# report\n")
    assert json.loads(run.file("summary.json").read_text())["status"] == RUNNING

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure()
    FigureCanvasAgg(fig)
    fig.add_subplot().plot([0, 1], [1, 0])
    run.write_figure("trials.png", fig)
    assert run.file("trials.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    done = run.finish(summary, "# report\n")
    assert done.status == FINISHED and done.finished
    newest = max(run.path.iterdir(), key=lambda p: p.stat().st_mtime_ns)
    assert newest.name == "summary.json"
    assert [p.name for p in run.path.iterdir() if p.name.startswith(".")] == []   # no temp files

    back = RunDir.open(run.path).require_finished("model.pt")
    assert back.device == "host" and back.status == FINISHED and back.started == running.started
    assert run.load_plan().keep == {"a": 4} and run.load_plan().meta == {"trial": 3}
    state = run.load_state_dict()
    assert torch.equal(state["weight"], model.weight.detach())
    assert run.file("trials.csv").read_text().splitlines() == ["number,keep:a", "0,4", "1,8"]
    assert run.file("summary.md").read_text() == "# report\n"


def test_readers_get_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        RunDir.open(tmp_path / "nope")
    run = RunDir.open(tmp_path)
    with pytest.raises(ConfigError, match=r"missing summary\.json, model\.onnx, plan\.json"):
        run.require_finished()
    for name in ("model.onnx", "plan.json"):
        (tmp_path / name).write_text("x")
    (tmp_path / "summary.json").write_text("{not json")
    with pytest.raises(ConfigError, match="is not valid JSON") as info:
        run.require_finished()
    assert "\n" not in str(info.value)
    (tmp_path / "summary.json").write_text(json.dumps({"status": "finished"}))
    assert run.require_finished().status == FINISHED
    with pytest.raises(ConfigError, match=r"missing model\.pt"):
        run.require_finished("model.pt")
