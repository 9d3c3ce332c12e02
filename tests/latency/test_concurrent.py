"""Two profiles on one table folder at once keep each other's rows, calibration points and
model records; a journal is dropped only by the save that folded it."""
from __future__ import annotations

import json
import multiprocessing
import queue
import time
from typing import Any, Iterable, Iterator

import pytest

from hwprune.devices import Runner
from hwprune.devices._runner import Measurement, MicroModel
from hwprune.latency import CalibrationPoint, Entry, LatencyTable, open_predictor
from hwprune.latency._lock import table_lock

KEY = "conv|cin={c}|cout={c}|k=3x3|s=1x1|p=1,1,1,1|g=1|hw=8x8|act=relu|res=0|float32"


class SleepyRunner(Runner):
    """Answers every kernel after a short sleep with a time that grows with its size, so
    two profiles of a few seconds each overlap."""

    name = "sleepy"

    def __init__(self, sleep_s: float = 0.03) -> None:
        super().__init__()
        self.sleep_s = sleep_s

    def prepare(self) -> None:
        pass

    def describe(self) -> dict[str, Any]:
        return {"runner": self.name, "runtime": "onnxruntime", "runtime_version": "test", "cpu": "test cpu",
                "threads": 1, "channel_block": 1}

    def measure(self, models: Iterable[MicroModel]) -> Iterator[Measurement]:
        for m in models:
            time.sleep(self.sleep_s)
            ms = 0.001 * (1 + len(m.onnx) / 1000)
            yield Measurement(m.key, ms, ms, ms, ms, 0.0, 5, 1)

    def time_models(self, models: list[MicroModel], rounds: int, seconds: float,
                    spread: list[float | None] | None = None) -> list[float | None]:
        time.sleep(self.sleep_s)
        if spread is not None:
            spread += [1.1] * len(models)
        return [0.002 * (1 + len(m.onnx) / 1000) for m in models]


def _profile(directory: str, model: str, start, results) -> None:
    """One profile process: wait for the other, then profile ``model`` into ``directory``."""
    from hwprune.latency import profile_model
    from hwprune.models import load_model
    from hwprune.pruning import analyze

    analysis = analyze(load_model(model))
    table = LatencyTable.load(directory, "host", create=True)
    start.wait(timeout=120)
    t0 = time.time()
    profile_model(analysis, table, SleepyRunner(), anchors=2, progress=False, in_context=False)
    results.put((analysis.model_key, t0, time.time()))


def test_two_profiles_at_once_both_models_predict(tmp_path):
    from hwprune.models import load_model
    from hwprune.pruning import analyze

    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_profile, args=(str(tmp_path), model, start, results))
             for model in ("demo", "resnet20")]
    for p in procs:
        p.start()
    done, deadline = [], time.time() + 600
    while len(done) < len(procs):  # a profile process that dies fails the test at once
        try:
            done.append(results.get(timeout=2))
        except queue.Empty:
            dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
            assert not dead and time.time() < deadline, f"a profile process failed (exit codes {dead})"
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    keys = [k for k, _, _ in done]
    (_, s1, e1), (_, s2, e2) = done
    assert max(s1, s2) < min(e1, e2)  # the two profiles overlapped
    table = LatencyTable.load(tmp_path, "host")
    assert set(keys) <= set(table.meta.models)
    assert {p.model for p in table.meta.calibration} >= set(keys)  # both calibrations kept
    assert not (tmp_path / "host.journal.jsonl").exists()
    for model in ("demo", "resnet20"):
        predictor = open_predictor(analyze(load_model(model)), "host", tmp_path, check_fresh=False)
        dense = predictor.analysis.space.dense_plan()
        small = predictor.analysis.space.uniform_plan(0.5)
        assert predictor.predict_ms(dense) > predictor.predict_ms(small) > 0


def _entry(c: int, ms: float = 0.01) -> Entry:
    return Entry(KEY.format(c=c), ms, "measured", "unit test", runs=5, timing="micro")


def test_a_save_merges_into_what_another_process_saved(tmp_path):
    a = LatencyTable.load(tmp_path, "host", create=True)
    b = LatencyTable.load(tmp_path, "host", create=True)
    a.record(_entry(8))
    b.record(_entry(16))
    a.meta.calibration.append(CalibrationPoint("m1@1x1x8x8", 1.0, 1.1))
    b.meta.calibration.append(CalibrationPoint("m2@1x1x8x8", 2.0, 2.2))
    a.record_model("m1", (1, 1, 8, 8))
    b.record_model("m2", (1, 1, 8, 8))
    a.save()  # folds both journaled rows: b's is in the files now, b's later save keeps it
    b.put(KEY.format(c=32), 0.03, "measured", "unit test")
    b.save()
    t = LatencyTable.load(tmp_path, "host")
    assert set(t.rows) == {KEY.format(c=c) for c in (8, 16, 32)}
    assert {p.model for p in t.meta.calibration} == {"m1@1x1x8x8", "m2@1x1x8x8"}
    assert set(t.meta.models) == {"m1@1x1x8x8", "m2@1x1x8x8"}
    # a change b did not make (a's row) stays as a saved it after b's save
    a.put(KEY.format(c=8), 0.5, "measured", "re-timed")
    a.save()
    b.save()
    assert LatencyTable.load(tmp_path, "host").rows[KEY.format(c=8)].latency_ms == 0.5


def test_journal_lines_of_another_profile_are_kept_until_folded(tmp_path):
    from hwprune.latency import CalibrationRound

    a = LatencyTable.load(tmp_path, "host", create=True)
    b = LatencyTable.load(tmp_path, "host", create=True)
    b.append_calibration_round(CalibrationRound("m2@1x1x8x8", 1, {"dense": 0.3}, "t"))
    a.record(_entry(8))
    a.save()  # a calibrated nothing: b's round stays journaled for a resumed b
    again = LatencyTable.load(tmp_path, "host")
    assert [r.model for r in again.pending_calibration] == ["m2@1x1x8x8"]
    assert KEY.format(c=8) in again.rows


def test_rebuild_replaces_instead_of_merging(tmp_path):
    a = LatencyTable.load(tmp_path, "host", create=True)
    a.record(_entry(8))
    a.save()
    b = LatencyTable.load(tmp_path, "host")
    b.reset()
    b.put(KEY.format(c=16), 0.02, "measured", "unit test")
    b.save()
    assert set(LatencyTable.load(tmp_path, "host").rows) == {KEY.format(c=16)}


def test_waiting_for_the_lock_is_reported_once(tmp_path, capfd):
    import threading

    t = LatencyTable.load(tmp_path, "host", create=True)
    t.put(KEY.format(c=8), 0.01, "measured", "unit test")
    held = threading.Event()
    release = threading.Event()

    def hold():
        with table_lock(tmp_path, "host"):
            held.set()
            release.wait(10)

    th = threading.Thread(target=hold)
    th.start()
    held.wait(10)
    saver = threading.Thread(target=t.save)
    saver.start()
    time.sleep(0.3)
    assert saver.is_alive()  # waits for the lock
    release.set()
    saver.join(10)
    th.join(10)
    err = capfd.readouterr().err
    assert err.count("waiting for another hwprune process") == 1
    assert KEY.format(c=8) in LatencyTable.load(tmp_path, "host").rows


@pytest.mark.parametrize("line,why", [
    ({"op": "entry", "key": KEY.format(c=8), "latency_ms": 0.01, "source": "measured", "method": "m",
      "runs": 0}, "timed 0 times"),
    ({"op": "entry", "key": KEY.format(c=8), "latency_ms": -1.0, "source": "measured", "method": "m"}, "latency"),
    ({"op": "entry", "key": KEY.format(c=8), "latency_ms": "NaN", "source": "measured", "method": "m"}, "latency"),
    ({"op": "entry", "key": "garbage", "latency_ms": 0.01, "source": "measured", "method": "m"}, "malformed"),
    ({"op": "entry", "key": KEY.format(c=8), "latency_ms": 0.01, "source": "guessed", "method": "m"}, "guessed"),
    ({"op": "entry", "key": KEY.format(c=8)}, "TypeError"),
    ({"op": "calibration_round", "model": "m", "rounds": 1, "times": {"dense": -2}}, "finite"),
    ({"op": "teleport"}, "unknown op"),
    ([1, 2], "not an object"),
])
def test_a_bad_journal_line_is_reported_and_never_folded_in(tmp_path, capfd, line, why):
    good = _entry(16)
    t = LatencyTable.load(tmp_path, "host", create=True)
    t.record(good)
    with open(tmp_path / "host.journal.jsonl", "a") as f:
        f.write(json.dumps(line) + "\n")
    again = LatencyTable.load(tmp_path, "host", create=True)
    err = capfd.readouterr().err
    assert "skipped 1 invalid line(s)" in err and why in err and err.count("\n") == 1
    assert set(again.rows) == {good.key} and not again.pending_calibration
    again.save()
    assert set(LatencyTable.load(tmp_path, "host").rows) == {good.key}
    assert not (tmp_path / "host.journal.jsonl").exists()
