"""A table notices when the machine has changed speed since it was built.

The test builds a host table for the demo model, then slows the machine down with a
CPU-bound neighbour process pinned to the core the test process is confined to (bounded
in time) and checks that opening a predictor re-times the table's reference model, reports
the slowdown with its ratio, and that the rescaled prediction matches what the slowed
machine measures.
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

import pytest

from hwprune.devices import LocalRunner, load_profile
from hwprune.latency import LatencyTable, open_predictor, profile_model
from hwprune.latency._calibration import idle_ms
from hwprune.latency._drift import DRIFT_THRESHOLD, REFERENCE_MAX_MS, Drift, _idle_ms, reference_for
from hwprune.models import load_model
from hwprune.onnx_export import to_onnx_bytes
from hwprune.pruning import analyze
from hwprune.runtimes.timing import TimingProtocol
from hwprune.search._study import plan_from_keep

_BUSY = "import os, sys, time; os.sched_setaffinity(0, {int(sys.argv[1])}); end = time.time() + 90\nwhile time.time() < end: pass"


@pytest.fixture(scope="module")
def demo_table(tmp_path_factory):
    d = tmp_path_factory.mktemp("drift-tables")
    a = analyze(load_model("demo", input_shape="1x1x224x224"))  # runs of tens of ms: many time slices each
    runner = LocalRunner(protocol=TimingProtocol(warmup=2, repeats=5, min_time_s=0.0))
    profile_model(a, LatencyTable.load(d, "host", create=True), runner, anchors=2, progress=False)
    return a, d


def _neighbour(core: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _BUSY, str(core)])


def test_build_keeps_a_reference_model(demo_table):
    a, d = demo_table
    table = LatencyTable.load(d, "host")
    ref = reference_for(table, a.model_key)
    assert ref is not None and (d / ref["file"]).is_file() and ref["measured_ms"] > 0
    # a longer reference beside it when the calibration reaches 1.5x its length, so a
    # drift that depends on length is followed
    mine = {p.plan: p for p in table.meta.calibration if p.model == a.model_key}
    main = mine[ref["plan"]]
    # the reference keeps its build's median round (what the drift check's median is compared
    # with) beside the point's idle-device estimate, its lower quartile
    assert ref["measured_ms"] == main.median_ms and main.min_ms <= main.measured_ms <= main.median_ms
    assert ref["idle_ms"] == main.measured_ms
    # tables from before it was recorded: the calibration point gives it
    assert _idle_ms(table, a.model_key, {k: v for k, v in ref.items() if k != "idle_ms"}) == main.measured_ms
    longest = max((p for p in mine.values() if p.measured_ms <= REFERENCE_MAX_MS), key=lambda p: p.measured_ms)
    others = ref["others"]
    assert [o["plan"] for o in others] == ([longest.plan] if longest.measured_ms >= 1.5 * main.measured_ms else [])
    assert all((d / o["file"]).is_file() for o in others)
    again = LatencyTable.load(d, "host")          # survives a save and a reload
    assert again.meta.reference == table.meta.reference


def _calibrated_plan(a, d):
    """The calibration plan near the reference's length the table predicts closest to what
    its build measured.

    The test is about what drift adds: a new plan's own table error (up to 6% on this
    demo's calibration points, -5.5% dense and +6% at 50% on a 2-core VM, the same in every
    build) would sit on top of the drift's and decide a 10% bound by itself; fidelity on
    plans the table never saw is ``benchmarks/latency_fidelity.py``'s job.
    """
    raw = open_predictor(a, "host", d, drift=False)
    mine = [p for p in raw.table.meta.calibration if p.model == a.model_key and p.keep]
    # near the reference's length: how far a model slows under a neighbour's time slices
    # depends on how its runs fall between them (a 25.7 ms reference 1.88x and a 29.7 ms
    # plan 2.17-2.42x on one CI VM, 2.03 ms 2.95x and 4.7 ms 1.78x on another), which no
    # table follows between its references; the reference itself is always a candidate
    ref_ms = reference_for(raw.table, a.model_key)["measured_ms"]
    mine = [p for p in mine if abs(p.measured_ms / ref_ms - 1) <= 0.10] or mine
    best = min(mine, key=lambda p: abs(raw.predict_ms(plan_from_keep(a.space, p.keep)) / p.measured_ms - 1))
    return plan_from_keep(a.space, best.keep)


def test_slowed_machine_is_noticed_and_predictions_follow(demo_table):
    a, d = demo_table
    plan = _calibrated_plan(a, d)
    runtime = load_profile("host").local_runtime()
    onnx = to_onnx_bytes(a.space.apply(plan), a.lm.input_shape)
    # this process and a CPU-bound neighbour share one core: the timing (unpinned, as the
    # standard stopwatch) cannot escape to an idle core, so every model runs at about half speed
    saved = os.sched_getaffinity(0)
    core = max(saved)
    os.sched_setaffinity(0, {core})
    procs = [_neighbour(core)]
    try:
        time.sleep(1.0)
        raw = open_predictor(a, "host", d, drift=False)
        kept = open_predictor(a, "host", d, drift=True, rescale=False)
        # a shared VM's own speed also swings from one second to the next: the drift check
        # and the measurement alternate five times and the medians are compared (a time-sliced
        # core slows one reading 2.1x and the next 2.5x: three pairs were not enough)
        preds, measured_ms = [], []
        for _ in range(5):
            preds.append(open_predictor(a, "host", d, drift=True))
            measured_ms.append(runtime.measure_latencies([onnx], rounds=3, seconds=1.0)[0]["median_ms"])
    finally:
        os.sched_setaffinity(0, saved)
        for p in procs:
            p.kill()
            p.wait()
    for pred in preds:
        assert pred.drift is not None and pred.drift.ratio > 1 + DRIFT_THRESHOLD, pred.drift
        assert pred.drift.significant and "slower" in pred.drift.describe("host")
        assert pred.rescale == pytest.approx(pred.drift.ratio)
        assert pred.predict_ms(plan) == pytest.approx(raw.predict_ms(plan) * pred.drift.ratio_at(raw.predict_ms(plan)))
    assert kept.drift.significant and kept.rescale == 1.0
    assert kept.predict_ms(plan) == pytest.approx(raw.predict_ms(plan))
    predicted = statistics.median(p.predict_ms(plan) for p in preds)
    # summarized as the table's calibration summarizes its rounds (its estimate of the
    # stopwatch on the otherwise idle machine, here the slowed one): the lower quartile
    measured = idle_ms(measured_ms)
    why = (predicted, measured, raw.predict_ms(plan), [p.drift for p in preds], measured_ms)
    assert abs(predicted - measured) / measured <= 0.10, why
    assert abs(predicted - measured) <= abs(raw.predict_ms(plan) - measured) / 3, why


def test_drift_is_interpolated_by_model_length():
    d = Drift("m", now_ms=40.0, built_ms=20.0, others=((5.0, 12.5), (60.0, 135.0)))   # 2.5x, 2.0x, 2.25x
    assert d.ratio_at(5.0) == pytest.approx(2.5) and d.ratio_at(1.0) == pytest.approx(2.5)
    assert d.ratio_at(20.0) == pytest.approx(2.0)
    assert d.ratio_at(60.0) == pytest.approx(2.25) and d.ratio_at(500.0) == pytest.approx(2.25)
    assert d.ratio_at(10.0) == pytest.approx(2.25)                  # halfway in log length
    assert 2.0 < d.ratio_at(40.0) < 2.25
    assert d.factors() == "2.00-2.50 by model length" and "5-60 ms" in d.describe("host")
    assert Drift("m", 40.0, 20.0).ratio_at(3.0) == pytest.approx(2.0) and Drift("m", 40.0, 20.0).factors() == "2.00"
    assert d.to_dict()["others"][1]["ratio"] == pytest.approx(2.25)


def test_a_reading_inside_the_builds_own_swing_is_not_drift():
    swung = Drift("m", now_ms=12.0, built_ms=10.0, built_low_ms=9.0, built_high_ms=13.0)
    assert not swung.significant                       # 20% off, but the build saw 13 ms itself
    assert Drift("m", 14.0, 10.0, 9.0, 13.0).significant          # beyond anything the build saw
    assert Drift("m", 8.0, 10.0, 9.0, 13.0).significant           # faster than its fastest round
    assert Drift("m", 12.0, 10.0).significant          # no range kept (older tables): 5% decides
    assert not Drift("m", 10.4, 10.0).significant
    assert Drift("m", 12.0, 10.0, 9.0, 13.0).to_dict()["built_range_ms"] == [9.0, 13.0]


def test_a_machine_faster_than_the_builds_idle_estimate_is_drift():
    """Noise only slows a machine: a re-timing more than 5% under the table's idle-device
    estimate (the lower quartile of its rounds) means the build ran in a slow spell, even
    when the build's own fastest round was faster still."""
    # built: rounds 8-13 ms, median 10, lower quartile 9.5; now 8.8 ms
    d = Drift("m", 8.8, 10.0, 8.0, 13.0, built_idle_ms=9.5)
    assert d.faster and d.significant
    assert d.factor == pytest.approx(8.8 / 9.5) and d.factors() == "0.93"     # against the idle estimate
    assert d.to_dict()["factor"] == pytest.approx(0.9263, abs=1e-4)
    # 3% under the idle estimate (8% under the median round): inside the build's swing
    assert not Drift("m", 9.2, 10.0, 8.0, 13.0, built_idle_ms=9.5).significant
    # slower keeps its rule and its basis, the median round
    slow = Drift("m", 14.0, 10.0, 8.0, 13.0, built_idle_ms=9.5)
    assert slow.significant and not slow.faster and slow.factor == pytest.approx(1.4)
    # every reference is scaled against its own idle estimate, interpolated by length
    both = Drift("m", 8.8, 10.0, 8.0, 13.0, others=((40.0, 34.0, 38.0),), built_idle_ms=9.5)
    assert both.ratio_at(10.0) == pytest.approx(8.8 / 9.5) and both.ratio_at(40.0) == pytest.approx(34.0 / 38.0)
    # a longer reference without an idle estimate falls back to its median round
    assert Drift("m", 8.8, 10.0, 8.0, 13.0, others=((40.0, 34.0),), built_idle_ms=9.5).ratio_at(40.0) == \
        pytest.approx(34.0 / 40.0)
