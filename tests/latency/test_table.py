from __future__ import annotations

import json
import random

import pandas as pd
import pytest

from hwprune.errors import MissingKernelsError, StaleTableError, TableError
from hwprune.latency import (TABLE_SCHEMA, CalibrationPoint, Entry, LatencyPredictor, LatencyTable,
                             fit_calibration, needed_keys)


def _filled(tmp_path, analysis, skip: int = 0) -> LatencyTable:
    t = LatencyTable.load(tmp_path, "dev", create=True)
    for i, key in enumerate(sorted(needed_keys(analysis))):
        if i < skip:
            continue
        t.put(key, 0.01 + (hash(key) % 100) / 1000, "measured", "unit test")
    t.meta.measured_on = {"cpu": "X", "runtime": "onnxruntime", "runtime_version": "1.0", "threads": 1}
    t.save()
    return t


def test_save_load_roundtrip_with_pandas(tmp_path, demo_analysis):
    t = _filled(tmp_path, demo_analysis)
    df = pd.read_csv(tmp_path / "dev.csv.gz")
    assert len(df) == len(t.rows)
    assert {"key", "op", "cin", "cout", "latency_ms", "source", "method"} <= set(df.columns)
    back = LatencyTable.load(tmp_path, "dev")
    assert back.lookup() == pytest.approx(t.lookup())
    meta = json.loads((tmp_path / "dev.json").read_text())
    assert meta["schema_version"] == TABLE_SCHEMA and meta["counts"]["measured"] == len(t.rows)
    assert not list(tmp_path.glob(".*tmp"))


def test_missing_entry_is_an_error_not_zero(tmp_path, demo_analysis):
    t = _filled(tmp_path, demo_analysis)
    pred = LatencyPredictor(demo_analysis, t)
    dense = demo_analysis.space.dense_plan()
    full = pred.predict_ms(dense)
    victim = pred.keys(dense)[3]
    del t.rows[victim]
    pred = LatencyPredictor(demo_analysis, t)
    with pytest.raises(MissingKernelsError) as err:
        pred.predict_ms(dense)
    assert victim in err.value.kernels
    assert "hwprune profile --device dev --model demo" in str(err.value)
    assert full > 0


def test_corrupt_and_stale_tables(tmp_path, demo_analysis):
    t = _filled(tmp_path, demo_analysis)
    with pytest.raises(StaleTableError, match="cpu"):
        t.check_fresh({"cpu": "Y", "runtime": "onnxruntime", "runtime_version": "1.0", "threads": 1})
    with pytest.raises(StaleTableError, match="runtime_version"):
        t.check_fresh({"cpu": "X", "runtime": "onnxruntime", "runtime_version": "2.0", "threads": 1})
    t.check_fresh({"cpu": "X", "runtime": "onnxruntime", "runtime_version": "1.0", "threads": 1})
    (tmp_path / "dev.json").write_text("{")
    with pytest.raises(TableError, match="corrupt"):
        LatencyTable.load(tmp_path, "dev")
    t.save()
    (tmp_path / "dev.csv.gz").write_bytes(b"\x1f\x8bgarbage")
    with pytest.raises(TableError, match="corrupt"):
        LatencyTable.load(tmp_path, "dev")
    with pytest.raises(TableError, match="hwprune profile --device nodev"):
        LatencyTable.load(tmp_path, "nodev")


def test_journal_survives_a_kill(tmp_path):
    t = LatencyTable.load(tmp_path, "dev", create=True)
    t.record(Entry("gap|cin=8|cout=8|k=1x1|s=1x1|p=0,0,0,0|g=1|hw=7x7|act=none|res=0|float32",
                   0.01, "measured", "m"))
    with open(tmp_path / "dev.journal.jsonl", "a") as f:
        f.write('{"key": "cut mid-wri')  # the kernel in flight when killed
    again = LatencyTable.load(tmp_path, "dev", create=True)
    assert len(again.rows) == 1
    again.save()
    assert not (tmp_path / "dev.journal.jsonl").exists()
    assert len(LatencyTable.load(tmp_path, "dev").rows) == 1


def test_calibration_fit():
    assert fit_calibration([(1.0, 1.5), (2.0, 2.5), (3.0, 3.5)]) == pytest.approx((1.0, 0.5))
    assert fit_calibration([(2.0, 3.0)]) == pytest.approx((1.5, 0.0))
    # a negative offset is kept while every point stays positive ...
    a, b = fit_calibration([(1.0, 0.5), (2.0, 1.6), (3.0, 2.7)])
    assert b < 0 and all(a * x + b > 0 for x in (1.0, 2.0, 3.0))
    # ... and a fit that would not be increasing falls back to a pure scale
    a, b = fit_calibration([(1.0, 3.0), (2.0, 2.0), (3.0, 1.0)])
    assert b == 0.0 and a > 0
    assert fit_calibration([]) == (1.0, 0.0)


def test_prediction_is_fast_enough_for_search(tmp_path, demo_analysis):
    import time

    t = _filled(tmp_path, demo_analysis)
    pred = LatencyPredictor(demo_analysis, t)
    rng = random.Random(0)
    plans = [demo_analysis.space.random_plan(rng) for _ in range(200)]
    start = time.perf_counter()
    values = [pred.predict_ms(p) for p in plans]
    per_call_ms = (time.perf_counter() - start) * 1000 / len(plans)
    assert all(v > 0 for v in values)
    assert per_call_ms < 20  # generous: typically ~0.1 ms; only guards against a regression to O(model)


def test_prediction_never_below_lowest_measured_ratio(tmp_path, demo_analysis):
    t = _filled(tmp_path, demo_analysis)
    pred = LatencyPredictor(demo_analysis, t)
    space = demo_analysis.space
    dense, mid = pred.kernel_sum_ms(space.dense_plan()), pred.kernel_sum_ms(space.uniform_plan(0.3))
    # two points whose affine fit has a large negative offset
    t.meta.calibration = [CalibrationPoint(demo_analysis.model_key, x, y)
                          for x, y in ((dense, dense * 1.0), (mid, mid * 0.5), (dense * 0.9, dense * 0.85))]
    pred = LatencyPredictor(demo_analysis, t)
    smallest = space.smallest_plan()
    assert pred.predict_ms(smallest) >= pred.min_ratio * pred.kernel_sum_ms(smallest) > 0
