"""MetaSchedule tuning on top of the schedule library: records apply where they won, the
library stays where it is faster, bad databases are refused in one line."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from hwprune.cli import main
from hwprune.compile import export_artifact
from hwprune.errors import CompileError
from hwprune.runtimes import tvm as _tvm
from hwprune.runtimes.tvm import _tuning

MATMUL = "fused_matmul_add_relu"


class BatchedMLP(nn.Module):
    """A batch-16 linear layer: the library's dense rule covers batch 1 only, so this
    matmul falls back to TVM's default lowering, which a few trials beat by far."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(256, 256)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.fc(x))


@pytest.fixture(scope="module")
def mlp(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The MLP tuned once (4 trials) into a database the tests copy."""
    root = tmp_path_factory.mktemp("mlp")
    torch.manual_seed(0)
    torch.onnx.export(BatchedMLP().eval(), (torch.randn(16, 256),), str(root / "mlp.onnx"), dynamo=False,
                      opset_version=17, input_names=["input"], output_names=["output"])
    target = _tvm.resolve_target(_tvm.HOST_TARGET, num_cores=1)
    report = _tvm.tune(_tvm.import_onnx(root / "mlp.onnx"), target, root / "db", 4, log_dir=root / "logs")
    return {"onnx": root / "mlp.onnx", "db": root / "db", "target": target, "report": report}


def _copy_db(mlp: dict, tmp_path: Path) -> Path:
    return Path(shutil.copytree(mlp["db"], tmp_path / "db"))


def _prim_scripts(mod) -> dict[str, str]:
    tvm = _tvm.import_tvm()
    return {gv.name_hint: f.script() for gv, f in mod.functions_items() if isinstance(f, tvm.tirx.PrimFunc)}


def _llvm_body(exe, name: str) -> str:
    text = "".join(m.inspect_source("ll") for m in exe.mod.imports if m.kind == "llvm")
    found = re.search(r"define[^\n]*@" + name + r"_compute_\(.*?\n}\n", text, re.S)
    assert found, f"no compiled function {name}"
    return re.sub(r"!\w+ !\d+|#\d+", "", found.group(0))   # debug/attribute numbering


def _run(exe, x: np.ndarray) -> np.ndarray:
    vm, dev = _tvm.load_vm(exe)
    return _tvm.run_vm(vm, dev, [x])[0]


def test_tuned_record_changes_compiled_code_where_it_won(mlp: dict, tmp_path: Path) -> None:
    report = mlp["report"]
    assert report.tasks == report.tuned_tasks == 1 and report.trials_per_task == 4
    (row,) = report.decisions
    assert row["task"] == MATMUL and row["decision"] == "tuned" and report.kept_tuned == 1
    assert row["tuned_ms"] <= _tuning.WIN_MARGIN * row["library_ms"]     # timed in one batch
    doc = json.loads((mlp["db"] / _tuning.DECISIONS).read_text())
    assert [v["decision"] for v in doc["tasks"].values()] == ["tuned"]
    assert doc["target"]["mcpu"] == mlp["target"]["mcpu"]

    mod, target = _tvm.import_onnx(mlp["onnx"]), mlp["target"]
    tuned, library = _tvm.schedule_for_build(mod, target, mlp["db"]), _tvm.schedule_for_build(mod, target)
    assert _prim_scripts(tuned)[MATMUL] != _prim_scripts(library)[MATMUL]
    exe_tuned, exe_library = _tvm.build(mod, target, database_dir=mlp["db"]), _tvm.build(mod, target)
    assert _llvm_body(exe_tuned, MATMUL) != _llvm_body(exe_library, MATMUL)
    x = np.random.default_rng(1).standard_normal((16, 256)).astype("float32")
    ref = ort.InferenceSession(str(mlp["onnx"]), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    for exe in (exe_tuned, exe_library):
        assert np.max(np.abs(_run(exe, x) - ref)) / np.max(np.abs(ref)) <= 1e-4

    # the same record with the library judged faster is not applied
    db = _copy_db(mlp, tmp_path)
    doc["tasks"] = {k: {**v, "decision": "library"} for k, v in doc["tasks"].items()}
    (db / _tuning.DECISIONS).write_text(json.dumps(doc))
    assert _prim_scripts(_tvm.schedule_for_build(mod, target, db)) == _prim_scripts(library)


def test_library_kept_where_it_is_faster(mlp: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The decision follows the paired times: here the timer reports the library faster."""
    real = _tuning._measure

    def library_faster(mods, tgt, builder, runner, rounds=1):
        times = real(mods, tgt, builder, runner, rounds)
        if rounds > 1:   # the decision's [library, tuned]: swap so the library wins
            times = [min(times), max(times)]
        return times

    monkeypatch.setattr(_tuning, "_measure", library_faster)
    target = mlp["target"]
    mod = _tvm.import_onnx(mlp["onnx"])
    report = _tvm.tune(mod, target, tmp_path / "db", 4, log_dir=tmp_path / "logs")
    (row,) = report.decisions
    assert row["decision"] == "library" and row["library_ms"] < row["tuned_ms"] and report.kept_tuned == 0
    assert (tmp_path / "db" / "database_tuning_record.json").stat().st_size > 0   # records exist ...
    assert _prim_scripts(_tvm.schedule_for_build(mod, target, tmp_path / "db")) == \
        _prim_scripts(_tvm.schedule_for_build(mod, target))                    # ... and are not used
    again = _tvm.tune(mod, target, tmp_path / "db", 4, log_dir=tmp_path / "logs")
    assert again.reused_tasks == 1 and again.tuned_tasks == 0   # decided: no more trials spent


def test_only_the_largest_tasks_get_trials(make_run, tmp_path: Path) -> None:
    """TinyCNN: 4 trials < 16 per task, so only the task with the largest share is tuned;
    a decision for the library leaves that function as the library compiles it."""
    run = make_run()
    db = tmp_path / "db"
    meta = export_artifact(run, "host", tmp_path / "art", tune_trials=4, database_dir=db, repeats=5, warmup=2)
    tuning = meta["tuning"]
    assert tuning["tasks"] == 4 and tuning["tuned_tasks"] == 1 and len(tuning["skipped"]) == 3
    (row,) = tuning["decisions"]
    assert row["share"] >= 1 / tuning["tasks"]   # the largest of four tasks
    assert (row["decision"] == "tuned") == (row["tuned_ms"] is not None
                                            and row["tuned_ms"] <= _tuning.WIN_MARGIN * row["library_ms"])
    assert meta["verification"]["max_abs_diff_over_scale"] <= 1e-4
    assert (tmp_path / "art" / "tuning_db" / _tuning.DECISIONS).is_file()   # shipped with the artifact
    if row["decision"] == "library":
        mod, target = _tvm.import_onnx(run / "model.onnx"), meta["target"]
        assert _prim_scripts(_tvm.schedule_for_build(mod, target, db)) == \
            _prim_scripts(_tvm.schedule_for_build(mod, target))


# --------------------------------------------------------------------------- bad input

def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_database_from_another_target_is_refused(make_run, mlp: dict, tmp_path: Path) -> None:
    db = _copy_db(mlp, tmp_path)
    lines = (db / "database_tuning_record.json").read_text().splitlines()
    other = []
    for line in lines:
        rec = json.loads(line)
        rec[1][2] = {"kind": "llvm", "mcpu": "cortex-a76", "mtriple": "aarch64-linux-gnu", "keys": ["arm_cpu"]}
        other.append(json.dumps(rec))
    (db / "database_tuning_record.json").write_text("\n".join(other) + "\n")
    before = _files(db)
    with pytest.raises(CompileError, match=r"tuned for target .*cortex-a76.*, not ") as info:
        export_artifact(make_run(), "host", tmp_path / "art", tune_trials=4, database_dir=db)
    assert "\n" not in str(info.value) and "--tuning-db" in info.value.hint
    assert _files(db) == before and not (tmp_path / "art").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    with pytest.raises(CompileError, match="cortex-a76"):   # building from it is refused as well
        _tvm.build(_tvm.import_onnx(mlp["onnx"]), mlp["target"], database_dir=db)


@pytest.mark.parametrize("name,text", [("database_tuning_record.json", '[0, [[["GetSBlock"'),
                                       ("database_workload.json", "not json\n"),
                                       (_tuning.DECISIONS, '{"tasks": [1, 2')])
def test_corrupt_database_is_refused_in_one_line(make_run, mlp: dict, tmp_path: Path, capsys,
                                                 name: str, text: str) -> None:
    db = _copy_db(mlp, tmp_path)
    (db / name).write_text(text)
    before = _files(db)
    code = main(["export", str(make_run()), "--device", "host", "--out", str(tmp_path / "art"),
                 "--tune-trials", "4", "--tuning-db", str(db)])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 1 and len(lines) == 1 and "Traceback" not in err, err
    assert f"tuning database file {db / name} is corrupt" in lines[0]
    assert _files(db) == before and not (tmp_path / "art").exists()


def test_zero_trials_tunes_nothing_and_negative_is_refused(make_run, tmp_path: Path, capsys) -> None:
    run, db = make_run(), tmp_path / "db"
    meta = export_artifact(run, "host", tmp_path / "art", tune_trials=0, database_dir=db, repeats=5, warmup=2)
    assert meta["tuning"] is None and not db.exists() and not (tmp_path / "art" / "tuning_db").exists()
    for argv in (["--tune-trials", "-3"], ["--tune-trials=-3"]):
        code = main(["export", str(run), "--device", "host", "--out", str(tmp_path / "neg"), *argv])
        lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
        assert code == 2 and len(lines) == 1 and "must be an integer >= 0, got '-3'" in lines[0], lines
    assert not (tmp_path / "neg").exists() and not db.exists()
