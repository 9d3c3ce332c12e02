"""Typed table records: every field survives save + load, old tables and journals still read."""
from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from hwprune.latency import (CalibrationPoint, CalibrationRound, Entry, LatencyTable, Source, TableMeta,
                             needed_keys, open_predictor)
from hwprune.latency._records import entry_from_cells, entry_from_json, entry_to_cells, entry_to_json

OLD_TABLE = Path(__file__).resolve().parents[1] / "assets" / "old_table"
KEYS = ["conv|cin=16|cout=32|k=3x3|s=1x1|p=1,1,1,1|g=1|hw=28x28|act=relu|res=0|float32",
        "conv|cin=32|cout=32|k=3x3|s=1x1|p=1,1,1,1|g=1|hw=14x14|act=relu|res=1|float32",
        "gap|cin=8|cout=8|k=1x1|s=1x1|p=0,0,0,0|g=1|hw=7x7|act=none|res=0|float32",
        "gemm|cin=64|cout=10|k=1x1|s=1x1|p=0,0,0,0|g=1|hw=1x1|act=none|res=0|float32"]


def _entries() -> list[Entry]:
    return [
        Entry(KEYS[0], 0.1 + 1e-17, Source.MEASURED, "in context: x", "2026-01-01T00:00:00+00:00", "in_context",
              (0.1 / 3, 0.1 + 1e-17, 0.30000000000000004), runs=50),
        Entry(KEYS[1], 0.02345678901234, "measured", "micro model: y", "2026-01-02T00:00:00+00:00", "micro",
              p10_ms=0.02, p90_ms=0.03, std_ms=1e-5, runs=200, raw_median_ms=0.0268),
        Entry(KEYS[2], 0.005, Source.INTERPOLATED, "linear over measured channel grid (8/16), a, b", "t"),
        Entry(KEYS[3], 1.5, Source.ESTIMATED, "estimated:roofline-v1 with user factors"),
    ]


def _meta() -> TableMeta:
    return TableMeta("dev", measured_on={"cpu": "X", "threads": 1, "channel_block": 16},
                     timing_protocol={"warmup": 2, "repeats": 5, "statistic": "median"},
                     runner_overhead_ms=0.0034, channel_block=16,
                     models={"demo@1x1x28x28": {"anchors_per_group": 5, "templates": 14}},
                     calibration=[CalibrationPoint("demo@1x1x28x28", 0.21, 0.24, "dense", {"conv1": 16},
                                                   0.25, 9, "2026-01-01", 0.27, 0.22, median_ms=0.235),
                                  CalibrationPoint("old@1x3x8x8", 1.0, 1.1)],
                     calibration_model="per model", estimator={"method": "m", "factors": {"a": 0.5}},
                     extra={"note_from_a_newer_version": [1, 2]})


def test_every_entry_and_the_meta_survive_save_and_load(tmp_path):
    table = LatencyTable("dev", _meta(), {e.key: e for e in _entries()}, tmp_path)
    table.save()
    back = LatencyTable.load(tmp_path, "dev")
    assert back.rows == table.rows  # every field of every entry, floats bit for bit
    assert back.meta == table.meta and back.meta.schema_version == 2
    assert back.rows[KEYS[0]].samples_ms == (0.1 / 3, 0.1 + 1e-17, 0.30000000000000004)
    assert back.rows[KEYS[1]].timing == "micro" and back.rows[KEYS[2]].timing is None
    # the CSV is still a plain table for pandas, signature spelled out
    df = pd.read_csv(tmp_path / "dev.csv.gz")
    assert list(df["key"]) == sorted(KEYS) and {"op", "cin", "samples_ms", "timing"} <= set(df.columns)
    assert table.frame()["latency_ms"].tolist() == pytest.approx(df["latency_ms"].tolist())


def test_codec_round_trips_cells_and_journal_lines():
    for e in _entries():
        assert entry_from_cells(entry_to_cells(e)) == e
        line = json.loads(json.dumps(entry_to_json(e)))
        assert line["op"] == "entry" and entry_from_json(line) == e


def test_journal_ops_and_old_journal_lines_replay(tmp_path):
    table = LatencyTable.load(tmp_path, "dev", create=True)
    first = table.record(_entries()[0])
    table.append_calibration_round(CalibrationRound("demo@1x1x28x28", 1, {"dense": 0.3}, "t"))
    with open(tmp_path / "dev.journal.jsonl", "a") as f:  # lines a previous version journaled
        f.write(json.dumps({"key": KEYS[1], "latency_ms": 0.02, "runs": 5, "samples_ms": "0.02;0.021",
                            "source": "measured", "method": "in context (old)", "created": "t"}) + "\n")
        f.write(json.dumps({"model": "demo@1x1x28x28", "rounds": 2, "times": {"dense": 0.29},
                            "created": "t", "kind": "calibration_round"}) + "\n")
        f.write('{"op": "entry", "key": "cut')
    again = LatencyTable.load(tmp_path, "dev", create=True)
    assert again.rows[KEYS[0]] == first
    old = again.rows[KEYS[1]]
    assert old.timing == "in_context" and old.samples_ms == (0.02, 0.021) and old.runs == 5
    assert [(r.rounds, r.times) for r in again.pending_calibration] == [(1, {"dense": 0.3}), (2, {"dense": 0.29})]


def _old_table(tmp_path) -> Path:
    d = tmp_path / "tables"
    shutil.copytree(OLD_TABLE, d)
    return d


def test_a_schema_1_table_still_loads_and_predicts(tmp_path, demo_analysis):
    d = _old_table(tmp_path)
    assert json.loads((d / "host.json").read_text())["schema_version"] == 1
    table = LatencyTable.load(d, "host")
    assert set(needed_keys(demo_analysis)) <= set(table.rows)
    measured = [e for e in table.rows.values() if e.source is Source.MEASURED]
    # provenance of old rows is read once, from their method text, into typed fields
    assert measured and all(e.timing == "in_context" for e in measured)
    assert all(e.samples_ms == () for e in measured)  # schema 1 dropped them
    assert table.meta.channel_block == 16 and len(table.meta.calibration) == 11
    pred = open_predictor(demo_analysis, "host", d, check_fresh=False)  # measured on another CPU
    assert pred.calibration_scope == "model"
    dense = pred.predict_ms(demo_analysis.space.dense_plan())
    assert 0.2 < dense < 1.0  # the demo CNN took about 0.45 ms on the machine that built it
    assert pred.predict_ms(demo_analysis.space.uniform_plan(0.5)) < dense
    # saving writes the new schema; the entries and their values stay what they were
    table.save()
    again = LatencyTable.load(d, "host")
    assert again.meta.schema_version == 2 and again.rows == table.rows


def test_opening_a_predictor_starts_no_runtime_session(tmp_path, demo_analysis, monkeypatch):
    import onnxruntime

    from hwprune.devices import load_profile
    from hwprune.runtimes.ort import channel_block

    d = _old_table(tmp_path)
    table = LatencyTable.load(d, "host")
    here = load_profile("host").local_runtime().identity()
    assert "channel_block" not in here
    table.meta.measured_on = {**here, "channel_block": 16}
    table.save()
    channel_block.cache_clear()  # a probe would have to build a session now
    sessions = []
    real = onnxruntime.InferenceSession
    monkeypatch.setattr(onnxruntime, "InferenceSession", lambda *a, **k: sessions.append(a) or real(*a, **k))
    pred = open_predictor(demo_analysis, "host", d)
    assert pred.predict_ms(demo_analysis.space.dense_plan()) > 0 and sessions == []
    # the table's own channel block, not this machine's, shapes the predictor's grid
    assert pred.table.meta.channel_block == 16
    table.meta.measured_on = {**here, "cpu": "Another CPU"}
    table.save()
    from hwprune.errors import StaleTableError

    with pytest.raises(StaleTableError, match="cpu"):
        open_predictor(demo_analysis, "host", d)
    assert sessions == []


def test_put_refuses_unknown_sources_and_timings():
    t = LatencyTable("dev")
    with pytest.raises(ValueError, match="unknown source"):
        t.put(KEYS[0], 1.0, "guessed", "m")
    with pytest.raises(ValueError, match="unknown timing"):
        replace(_entries()[0], timing="somewhere")
