"""The whole TVM path on this machine, as a user runs it: profile the host-tvm table
(kernels compiled by TVM with the schedule library), search under a budget, export the
TVM artifact, and hold its measured latency to the prediction and the budget."""
from __future__ import annotations

import json
import time

from hwprune.cli import main


def test_host_tvm_search_then_export_keeps_the_budget(tmp_path, capsys):
    work = str(tmp_path / "work")
    assert main(["profile", "--device", "host-tvm", "--model", "demo", "--anchors", "3", "--work-dir", work,
                 "--no-progress", "--format", "json"]) == 0
    profiled = json.loads(capsys.readouterr().out)
    assert profiled["timed"] > 0 and profiled["calibration_points"] >= 5
    run = str(tmp_path / "work" / "runs" / "r")
    assert main(["search", "--device", "host-tvm", "--latency", "50%", "--trials", "6", "--finalists", "1",
                 "--finetune-steps", "10", "--val-images", "300", "--calibration-images", "128",
                 "--work-dir", work, "--run-dir", run, "--no-progress", "--format", "json"]) == 0
    searched = json.loads(capsys.readouterr().out)
    summary = json.loads((tmp_path / "work" / "runs" / "r" / "summary.json").read_text())
    budget_ms = summary["budget"]["latency_ms"]
    assert summary["pruned"]["predicted_ms"] <= budget_ms
    assert summary["pruned"]["measured"]["runtime"] == "tvm", searched
    code, out, err = _export(run, work, capsys)
    if code != 0 and "above the" in err:
        # export already takes up to five fresh-process readings; a CI neighbour busy for
        # longer than that can still hold all of them up, so a user would run it again later
        time.sleep(30)
        code, out, err = _export(run, work, capsys)
    assert code == 0, err                    # export fails when the artifact runs >10% over the prediction
    meta = json.loads(out)
    m = meta["measured"]
    assert meta["verification"]["status"] == "passed" and m["deployed_runtime"] == "tvm"
    assert m["deployed_over_predicted"] <= 1.10
    assert m["stopwatch"]["runtime"] == "tvm" and m["stopwatch"]["median_ms"] <= 1.10 * budget_ms


def _export(run: str, work: str, capsys) -> tuple[int, str, str]:
    code = main(["export", run, "--device", "host-tvm", "--work-dir", work, "--format", "json"])
    out, err = capsys.readouterr()
    return code, out, err
