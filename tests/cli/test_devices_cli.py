from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from hwprune.cli import main

REPO = Path(__file__).resolve().parents[2]
HAS_DATA = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").is_file()


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_devices_shows_measured_or_estimated(capsys):
    code, out, _ = run(capsys, "devices", "--format", "json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert code == 0
    assert {"host", "pixel1", "pixel7", "jetson-orin-nano", "a100", "h100"} <= set(rows)
    for name in ("pixel1", "pixel7", "jetson-orin-nano", "a100", "h100"):
        assert rows[name]["table"] == "estimated"
        assert "resnet18@1x3x224x224" in rows[name]["models"]


def test_latency_on_estimated_device_warns(capsys):
    code, out, err = run(capsys, "latency", "--device", "pixel7", "--model", "resnet18", "--format", "json")
    assert code == 0
    res = json.loads(out)
    assert res["table_kind"] == "estimated" and res["predicted_ms"] > 0
    assert all(k["source"] == "estimated" for k in res["kernels"])
    assert "estimated" in err and "hwprune profile --device pixel7" in err and "--rpc" in err


def test_latency_for_a_user_model_on_pixel1(tmp_path, capsys):
    f = tmp_path / "mbv1.py"
    f.write_text("from hwprune.models._mobilenet import MobileNetV1\n"
                 "def make():\n"
                 "    return MobileNetV1(channels=[48, 96, 96, 200, 200, 400, 400, 400, 400, 400, 400, 800, 800])\n")
    code, out, err = run(capsys, "latency", "--device", "pixel1", "--model", f"{f}:make",
                         "--input-shape", "1x3x224x224", "--format", "json")
    assert code == 0, err
    res = json.loads(out)
    dense = json.loads(run(capsys, "latency", "--device", "pixel1", "--model", "mobilenet_v1",
                           "--format", "json")[1])
    # narrower than MobileNetV1 1.0 everywhere, so faster on the same phone
    assert 0 < res["predicted_ms"] < dense["predicted_ms"]


@pytest.mark.skipif(not HAS_DATA, reason="needs the dataset-fashion-mnist package")
def test_search_on_estimated_device_stays_in_budget(tmp_path, capsys):
    code, out, err = run(capsys, "search", "--device", "pixel7", "--latency", "50%", "--trials", "3",
                         "--finetune-steps", "2", "--val-images", "200", "--calibration-images", "64",
                         "--run-dir", str(tmp_path / "run"), "--no-progress", "--format", "json")
    assert code == 0, err
    res = json.loads(out)
    assert "estimated" in err and "hwprune profile --device pixel7" in err
    assert res["pruned"]["predicted_ms"] <= res["budget"]["latency_ms"]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "finished"


def test_host_measured_table_copied_elsewhere_is_stale(tmp_path, capsys):
    src = REPO / "latency_tables"
    if not (src / "host.json").is_file():
        pytest.skip("no shipped host table")
    for f in ("host.csv.gz", "host.json"):
        shutil.copy(src / f, tmp_path / f)
    meta = json.loads((tmp_path / "host.json").read_text())
    meta["measured_on"]["cpu"] = "A CPU that is not this one"
    (tmp_path / "host.json").write_text(json.dumps(meta))
    code, _, err = run(capsys, "latency", "--device", "host", "--model", "demo", "--tables", str(tmp_path))
    assert code == 1 and "stale" in err and "hwprune profile --device host" in err
    code, out, _ = run(capsys, "devices", "--tables", str(tmp_path), "--format", "json")
    assert {r["name"]: r for r in json.loads(out)}["host"]["table"] == "stale"


def test_speed_now_says_when_predictions_are_scaled_by_another_factor():
    from hwprune.cli._devices import _drift_text
    from hwprune.latency._drift import Drift

    assert _drift_text(None) == "-"
    assert _drift_text(Drift("m", 10.3, 10.0, 9.0, 13.0, built_idle_ms=9.5).to_dict()) == "x1.03"
    assert _drift_text(Drift("m", 14.0, 10.0, 9.0, 13.0, built_idle_ms=9.5).to_dict()) == "x1.40 (drifted)"
    # faster than the idle estimate: scaled against it, not against the median round
    assert _drift_text(Drift("m", 8.8, 10.0, 8.0, 13.0, built_idle_ms=9.5).to_dict()) == \
        "x0.88 (drifted, predictions x0.93)"
