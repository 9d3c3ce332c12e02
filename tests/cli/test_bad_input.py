"""Bad input to every command: one line on stderr, a non-zero exit, no traceback, and no
file changed under the work folder (tables and runs), whatever flag kind is wrong.

The work folder is built once per module: a small host table for the demo written by hand
(every kernel of the demo's pruning space, "measured" on this machine's runtime identity),
a finished run directory, plans, weights and tables of the wrong kind.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections import namedtuple
from pathlib import Path

import pytest

from hwprune.cli import main

W = "{W}"


def _checksums(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _write_table(directory: Path, analysis) -> None:
    from hwprune.devices import load_profile
    from hwprune.latency import LatencyTable, needed_keys

    t = LatencyTable.load(directory, "host", create=True)
    for i, key in enumerate(sorted(needed_keys(analysis))):
        t.put(key, 0.001 + (i % 17) / 1000, "measured", "hand-written for the bad-input tests",
              timing="micro", runs=5)
    t.meta.measured_on = dict(load_profile("host").local_runtime().identity())
    t.meta.runtime = "onnxruntime"
    t.record_model(analysis.lm.model_id, analysis.lm.input_shape)
    t.save()


def _write_run(run_dir: Path, analysis, spec: str = "demo", finished: bool = True) -> None:
    from hwprune.onnx_export import to_onnx_bytes
    from hwprune.rundir import RunDir, RunSummary

    plan = analysis.space.uniform_plan(0.5)
    model = analysis.space.apply(plan)
    run = RunDir(run_dir)
    run.mark_running()
    run.write_plan(plan)
    run.write_model(model)
    run.write_onnx(to_onnx_bytes(model, analysis.lm.input_shape))
    summary = RunSummary(device="host", predicted_latency_ms=0.1, files=["plan.json", "model.pt", "model.onnx"],
                         model={"spec": spec, "input_shape": list(analysis.lm.input_shape)})
    if finished:
        run.finish(summary)


@pytest.fixture(scope="module")
def work(tmp_path_factory, demo_analysis):
    """The work folder and the files the cases name (see the module docstring)."""
    import torch

    from hwprune._paths import shipped_tables_dir

    root = tmp_path_factory.mktemp("bad-input")
    w = root / "work"
    _write_table(w / "tables", demo_analysis)
    _write_run(w / "runs" / "done", demo_analysis)
    _write_run(w / "runs" / "unfinished", demo_analysis, finished=False)
    (root / "marker-module.py").write_text(f"open({str(root / 'MARKER')!r}, 'w').write('imported')\n"
                                           "def make():\n    raise SystemExit('never')\n")
    _write_run(w / "runs" / "evil", demo_analysis, spec=f"{root / 'marker-module.py'}:make")
    wrong = w / "wrong-device"  # pixel7's table copied in as host.*
    wrong.mkdir()
    for suffix in (".csv.gz", ".json"):
        shutil.copyfile(shipped_tables_dir() / f"pixel7{suffix}", wrong / f"host{suffix}")
    wrong_rt = w / "wrong-runtime"  # a table timed with TVM, relabelled host
    shutil.copytree(w / "tables", wrong_rt)
    meta = json.loads((wrong_rt / "host.json").read_text())
    meta.update(runtime="tvm", measured_on={**meta["measured_on"], "runtime": "tvm"})
    (wrong_rt / "host.json").write_text(json.dumps(meta))

    files = root / "files"
    files.mkdir()
    (files / "afile").write_text("not a folder\n")
    (files / "garbage.pt").write_bytes(b"this is not a torch file\n" * 10)
    (files / "empty.pt").write_bytes(b"")
    torch.save(torch.nn.Linear(2, 2), files / "module.pt")
    (files / "notjson.json").write_text("{plan")
    plan = demo_analysis.space.uniform_plan(0.5)
    doc = plan.to_dict()
    first = next(iter(doc["groups"]))
    doc["groups"][first]["keep"] = 12.7
    (files / "keep127.json").write_text(json.dumps(doc))
    group = demo_analysis.space.by_name[first]
    off = next(c for c in range(1, group.size) if c not in group.choices)
    doc["groups"][first]["keep"] = off
    (files / "offgrid.json").write_text(json.dumps(doc))
    other = plan.to_dict()
    other["model_id"] = "resnet20"
    (files / "other-model.json").write_text(json.dumps(other))
    (files / "readonly").mkdir()
    (files / "full").mkdir()
    return {"root": root, "W": w, "T": w / "tables", "F": files, "off": off, "group": group}


def _argv(argv: list[str], work: dict) -> list[str]:
    subs = {"{W}": str(work["W"]), "{T}": str(work["T"]), "{F}": str(work["F"]),
            "{RUN}": str(work["W"] / "runs" / "done"), "{EVIL}": str(work["W"] / "runs" / "evil"),
            "{UNFINISHED}": str(work["W"] / "runs" / "unfinished"),
            "{WRONG}": str(work["W"] / "wrong-device"), "{WRONGRT}": str(work["W"] / "wrong-runtime")}
    out = []
    for a in argv:
        for k, v in subs.items():
            a = a.replace(k, v)
        out.append(a)
    return out


FILE, RO, FULL = "{F}/afile", "{F}/readonly", "{F}/full"
PRUNE = ["prune", "--model", "demo", "--ratio", "0.5", "--out", "{F}/out"]
PROFILE = ["profile", "--device", "host", "--model", "demo", "--tables", "{T}", "--no-progress"]
LATENCY = ["latency", "--device", "host", "--model", "demo", "--tables", "{T}"]
SEARCH = ["search", "--device", "host", "--latency", "50%", "--tables", "{T}", "--run-dir", "{F}/run"]
EXPORT = ["export", "{RUN}", "--device", "host", "--out", "{F}/artifact"]


def _with(base: list[str], *extra: str, drop: tuple[str, ...] = ()) -> list[str]:
    """``base`` with the flags in ``drop`` (and their values) removed and ``extra`` added."""
    out, skip = [], False
    for i, a in enumerate(base):
        if skip:
            skip = False
            continue
        if a in drop:
            skip = i + 1 < len(base) and not base[i + 1].startswith("--")
            continue
        out.append(a)
    return out + list(extra)


CASES = [
    # (id, argv, needles in the one line)
    ("top-unknown-command", ["nosuch"], ["invalid choice"]),
    ("models-format", ["models", "--format", "xml"], ["--format"]),
    ("models-unknown-flag", ["models", "--bogus"], ["--bogus"]),
    ("devices-tables-file", ["devices", "--tables", FILE], ["is a file"]),
    ("devices-format", ["devices", "--format", "yaml"], ["--format"]),
    ("worker-unknown-flag", ["worker", "--port", "1"], ["--port"]),
    # prune: numbers, exclusive flags, output folder, plan files, model, weights, shape
    ("prune-ratio-high", _with(PRUNE, "--ratio", "1.2", drop=("--ratio",)), ["--ratio", "1.2"]),
    ("prune-ratio-nan", _with(PRUNE, "--ratio", "nan", drop=("--ratio",)), ["--ratio", "nan"]),
    ("prune-ratio-text", _with(PRUNE, "--ratio", "abc", drop=("--ratio",)), ["--ratio", "abc"]),
    ("prune-ratio-and-plan", _with(PRUNE, "--plan", "{F}/offgrid.json"), ["exactly one"]),
    ("prune-no-ratio-no-plan", _with(PRUNE, drop=("--ratio",)), ["exactly one"]),
    ("prune-out-missing", ["prune", "--model", "demo", "--ratio", "0.5"], ["--out"]),
    ("prune-out-file", _with(PRUNE, "--out", FILE, drop=("--out",)), ["is a file"]),
    ("prune-out-under-file", _with(PRUNE, "--out", FILE + "/sub", drop=("--out",)), ["lies under the file"]),
    ("prune-out-readonly", _with(PRUNE, "--out", RO + "/sub", drop=("--out",)), ["not writable"]),
    ("prune-out-full", _with(PRUNE, "--out", FULL + "/sub", drop=("--out",)), ["no space"]),
    ("prune-plan-fraction", _with(PRUNE, "--plan", "{F}/keep127.json", drop=("--ratio",)),
     ["whole number", "12.7"]),
    ("prune-plan-missing", _with(PRUNE, "--plan", "{F}/nope.json", drop=("--ratio",)), ["does not exist"]),
    ("prune-plan-not-json", _with(PRUNE, "--plan", "{F}/notjson.json", drop=("--ratio",)), ["not valid JSON"]),
    ("prune-plan-other-model", _with(PRUNE, "--plan", "{F}/other-model.json", drop=("--ratio",)), ["resnet20"]),
    ("prune-model-unknown", _with(PRUNE, "--model", "resnet99", drop=("--model",)), ["unknown model 'resnet99'"]),
    ("prune-model-missing-file", _with(PRUNE, "--model", "{F}/nosuch.py:make", drop=("--model",)),
     ["does not exist"]),
    ("prune-weights-garbage", _with(PRUNE, "--weights", "{F}/garbage.pt"), ["garbage.pt", "not a file saved"]),
    ("prune-weights-pickled-module", _with(PRUNE, "--weights", "{F}/module.pt"), ["module.pt", "Python objects"]),
    ("prune-weights-empty", _with(PRUNE, "--weights", "{F}/empty.pt"), ["empty.pt", "is empty"]),
    ("prune-weights-missing", _with(PRUNE, "--weights", "{F}/nope.pt"), ["nope.pt", "does not exist"]),
    ("prune-weights-folder", _with(PRUNE, "--weights", "{F}"), ["is a folder"]),
    ("prune-shape-short", _with(PRUNE, "--input-shape", "1x3"), ["NxCxHxW", "1x3"]),
    ("prune-shape-zero", _with(PRUNE, "--input-shape", "0x1x28x28"), ["NxCxHxW"]),
    # profile: every number, the table folder, the device and how to reach it, the model
    ("profile-anchors-0", _with(PROFILE, "--anchors", "0"), ["--anchors", ">= 2"]),
    ("profile-anchors-1", _with(PROFILE, "--anchors", "1"), ["--anchors", ">= 2"]),
    ("profile-anchors-text", _with(PROFILE, "--anchors", "five"), ["--anchors"]),
    ("profile-multiple-0", _with(PROFILE, "--multiple", "0"), ["--multiple", ">= 1"]),
    ("profile-threads-0", _with(PROFILE, "--threads", "0"), ["--threads", ">= 1"]),
    ("profile-threads-negative", _with(PROFILE, "--threads", "-2"), ["--threads"]),
    ("profile-repeats-0", _with(PROFILE, "--repeats", "0"), ["--repeats", ">= 1"]),
    ("profile-warmup-negative", _with(PROFILE, "--warmup", "-1"), ["--warmup"]),
    ("profile-min-time-negative", _with(PROFILE, "--min-time", "-1"), ["--min-time"]),
    ("profile-min-time-inf", _with(PROFILE, "--min-time", "inf"), ["--min-time"]),
    ("profile-timeout-0", _with(PROFILE, "--timeout", "0"), ["--timeout"]),
    ("profile-timeout-nan", _with(PROFILE, "--timeout", "nan"), ["--timeout"]),
    ("profile-tables-file", _with(PROFILE, "--tables", FILE, drop=("--tables",)), ["is a file"]),
    ("profile-tables-readonly", _with(PROFILE, "--tables", RO, drop=("--tables",)), ["not writable"]),
    ("profile-tables-full", _with(PROFILE, "--tables", FULL, drop=("--tables",)), ["no space"]),
    ("profile-rpc-no-port", _with(PROFILE, "--rpc", "tracker"), ["--rpc", "HOST:PORT"]),
    ("profile-rpc-bad-port", _with(PROFILE, "--rpc", "tracker:99999"), ["--rpc", "65535"]),
    ("profile-runner-and-rpc", _with(PROFILE, "--runner", "ssh x", "--rpc", "h:9190"), ["either --runner or --rpc"]),
    ("profile-device-unknown", _with(PROFILE, "--device", "pixle7", drop=("--device",)), ["unknown device 'pixle7'"]),
    ("profile-device-missing", _with(PROFILE, drop=("--device",)), ["--device"]),
    ("profile-table-of-another-device", _with(PROFILE, "--tables", "{WRONG}", drop=("--tables",)),
     ["belongs to device 'pixel7'"]),
    ("profile-weights-garbage", _with(PROFILE, "--weights", "{F}/garbage.pt"), ["garbage.pt", "not a file saved"]),
    # latency: numbers, plans, tables
    ("latency-plan-fraction", _with(LATENCY, "--plan", "{F}/keep127.json"), ["whole number", "12.7"]),
    ("latency-plan-off-grid", _with(LATENCY, "--plan", "{F}/offgrid.json"), ["not on its channel grid", "nearest"]),
    ("latency-plan-other-model", _with(LATENCY, "--plan", "{F}/other-model.json"), ["resnet20"]),
    ("latency-tables-file", _with(LATENCY, "--tables", FILE, drop=("--tables",)), ["is a file"]),
    ("latency-table-of-another-device", _with(LATENCY, "--tables", "{WRONG}", drop=("--tables",)),
     ["belongs to device 'pixel7'"]),
    ("latency-table-of-another-runtime", _with(LATENCY, "--tables", "{WRONGRT}", drop=("--tables",)),
     ["timed with tvm", "another device"]),
    ("latency-repeats-0", _with(LATENCY, "--repeats", "0"), ["--repeats"]),
    ("latency-warmup-text", _with(LATENCY, "--warmup", "x"), ["--warmup"]),
    ("latency-min-time-negative", _with(LATENCY, "--min-time", "-0.5"), ["--min-time"]),
    ("latency-measure-remote", ["latency", "--device", "pixel7", "--model", "demo", "--measure"],
     ["needs the device at hand"]),
    ("latency-shape-text", _with(LATENCY, "--input-shape", "abc"), ["NxCxHxW"]),
    ("latency-weights-pickled-module", _with(LATENCY, "--weights", "{F}/module.pt"), ["Python objects"]),
    # search: numbers, budgets, run folder (checked before minutes of loading)
    ("search-trials-0", _with(SEARCH, "--trials", "0"), ["--trials"]),
    ("search-latency-stat-p95", _with(SEARCH, "--latency-stat", "p95"), ["--latency-stat", "p95"]),
    ("latency-stat-p95", _with(LATENCY, "--latency-stat", "p95"), ["--latency-stat", "p95"]),
    ("search-finalists-0", _with(SEARCH, "--finalists", "0"), ["--finalists"]),
    ("search-lr-0", _with(SEARCH, "--lr", "0"), ["--lr"]),
    ("search-lr-negative", _with(SEARCH, "--lr", "-1"), ["--lr"]),
    ("search-val-images-0", _with(SEARCH, "--val-images", "0"), ["--val-images"]),
    ("search-calibration-images-negative", _with(SEARCH, "--calibration-images", "-5"), ["--calibration-images"]),
    ("search-finetune-steps-negative", _with(SEARCH, "--finetune-steps", "-1"), ["--finetune-steps"]),
    ("search-candidate-steps-text", _with(SEARCH, "--candidate-finetune-steps", "x"), ["--candidate-finetune-steps"]),
    ("search-seed-text", _with(SEARCH, "--seed", "abc"), ["--seed"]),
    ("search-sampler", _with(SEARCH, "--sampler", "grid"), ["--sampler"]),
    ("search-run-dir-file", _with(SEARCH, "--run-dir", FILE, drop=("--run-dir",)), ["is a file"]),
    ("search-run-dir-readonly", _with(SEARCH, "--run-dir", RO + "/r", drop=("--run-dir",)), ["not writable"]),
    ("search-run-dir-full", _with(SEARCH, "--run-dir", FULL + "/r", drop=("--run-dir",)), ["no space"]),
    ("search-no-budget", _with(SEARCH, drop=("--latency",)), ["give a budget"]),
    ("search-resume-without-run-dir", _with(SEARCH, "--resume", drop=("--run-dir",)), ["--resume needs --run-dir"]),
    ("search-latency-negative", _with(SEARCH, "--latency", "-5ms", drop=("--latency",)), ["-5ms"]),
    ("search-memory-text", _with(SEARCH, "--memory", "lots"), ["lots"]),
    ("search-tables-file", _with(SEARCH, "--tables", FILE, drop=("--tables",)), ["is a file"]),
    ("search-device-unknown", _with(SEARCH, "--device", "nosuch", drop=("--device",)), ["unknown device 'nosuch'"]),
    # export: the run folder, the output folder, numbers
    ("export-run-missing", ["export", "{F}/norun", "--device", "host"], ["does not exist"]),
    ("export-run-file", ["export", FILE, "--device", "host"], ["is a file"]),
    ("export-run-unfinished", ["export", "{UNFINISHED}", "--device", "host"], ["status 'running'"]),
    ("export-out-file", _with(EXPORT, "--out", FILE, drop=("--out",)), ["is a file"]),
    ("export-out-readonly", _with(EXPORT, "--out", RO + "/a", drop=("--out",)), ["not writable"]),
    ("export-out-full", _with(EXPORT, "--out", FULL + "/a", drop=("--out",)), ["no space"]),
    ("export-tune-trials-negative", _with(EXPORT, "--tune-trials", "-1"), ["--tune-trials"]),
    ("export-tuning-db-file", _with(EXPORT, "--tuning-db", FILE), ["is a file"]),
    ("export-device-unknown", _with(EXPORT, "--device", "nosuch", drop=("--device",)), ["unknown device 'nosuch'"]),
    ("export-user-model-run-bad-out", ["export", "{EVIL}", "--out", FILE], ["is a file"]),
]


@pytest.fixture
def restricted(monkeypatch, work):
    """``{F}/readonly`` is not writable and ``{F}/full`` has no space left (simulated: the
    tests may run as root, who may write anywhere)."""
    readonly, full = str(work["F"] / "readonly"), str(work["F"] / "full")
    real_access, real_usage = os.access, shutil.disk_usage
    usage = namedtuple("usage", "total used free")

    def access(path, mode, *a, **k):
        if str(path).startswith(readonly) and mode & os.W_OK:
            return False
        return real_access(path, mode, *a, **k)

    def disk_usage(path):
        return usage(1 << 30, (1 << 30) - 4096, 4096) if str(path).startswith(full) else real_usage(path)

    monkeypatch.setattr(os, "access", access)
    monkeypatch.setattr(shutil, "disk_usage", disk_usage)


@pytest.mark.parametrize("argv,needles", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input(work, restricted, monkeypatch, capsys, argv, needles):
    monkeypatch.setenv("HWPRUNE_WORK_DIR", str(work["W"]))
    before = _checksums(work["W"])
    code = main(_argv(argv, work))
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert code != 0, (out, err)
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert _checksums(work["W"]) == before
    assert not (work["root"] / "MARKER").exists()
    assert not list(work["F"].glob("out*")) and not (work["F"] / "run").exists()


def test_enough_cases():
    assert len(CASES) >= 60
    assert {c[1][0] for c in CASES} >= {"models", "devices", "prune", "profile", "latency", "search", "export",
                                        "worker"}
