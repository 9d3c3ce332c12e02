from __future__ import annotations

import sys
from dataclasses import replace

import pytest

from hwprune.pruning import analyze
from hwprune.devices import LocalRunner
from hwprune.runtimes.ort import channel_block
from hwprune.runtimes.timing import TimingProtocol
from hwprune.devices._worker import WorkerRunner
from hwprune.latency import LatencyPredictor, LatencyTable, anchor_keys, anchor_plans, needed_keys, profile_model
from hwprune.errors import ConfigError, TableError
from hwprune.models import load_model

FAST = TimingProtocol(warmup=2, repeats=5, min_time_s=0.0)
BLOCK = channel_block()  # what this machine's onnxruntime pads channels to


@pytest.fixture(scope="module")
def r20():
    return analyze(load_model("resnet20"))


class _Killed(Exception):
    pass


class _DyingRunner(LocalRunner):
    """Dies after ``n`` kernels, as a profiler killed midway would."""

    def __init__(self, n: int) -> None:
        super().__init__(protocol=FAST)
        self.n = n

    def measure(self, models):
        for i, m in enumerate(super().measure(models)):
            if i == self.n:
                raise _Killed()
            yield m

    def profile_nodes(self, onnx, runs):
        if self.n == 0:
            raise _Killed()
        self.n -= 1
        return super().profile_nodes(onnx, runs)


def test_profile_resumes_after_kill_and_interpolates(tmp_path, r20):
    table = LatencyTable.load(tmp_path, "host", create=True)
    with pytest.raises(_Killed):
        profile_model(r20, table, _DyingRunner(25), calibrate=False, progress=False, in_context=False)
    # the 25 finished kernels are on disk; the one in flight is lost
    again = LatencyTable.load(tmp_path, "host", create=True)
    assert len(again.measured_keys()) == 25
    report = profile_model(r20, again, LocalRunner(protocol=FAST), calibrate=False, progress=False,
                           in_context=False)
    anchors = anchor_keys(r20, 5, BLOCK)
    assert report.reused == 25 and report.timed == len(anchors) - 25
    final = LatencyTable.load(tmp_path, "host")
    counts = final.counts()
    assert counts["measured"] == len(anchors)
    assert counts["measured"] + counts["interpolated"] == len(needed_keys(r20))
    assert all("linear over measured channel grid" in e.method
               for e in final.rows.values() if e.source == "interpolated")
    assert all(e.timing == "micro" and e.raw_median_ms >= e.latency_ms and e.runs
               for e in final.rows.values() if e.source == "measured")
    meta = final.meta.models["resnet20@1x3x32x32"]
    assert meta["measured_kernels"] == len(anchors)
    # a measured anchor is used as is; an interpolated value lies between its anchors
    pred = LatencyPredictor(r20, final)
    assert pred.predict_ms(r20.space.uniform_plan(0.5)) > 0


def test_in_context_profiling_covers_anchors_and_resumes(tmp_path, r20):
    plans = anchor_plans(r20, 5, BLOCK)
    anchors = anchor_keys(r20, 5, BLOCK)
    table = LatencyTable.load(tmp_path, "host", create=True)
    with pytest.raises(_Killed):
        profile_model(r20, table, _DyingRunner(3), calibrate=False, progress=False)
    partial = LatencyTable.load(tmp_path, "host", create=True).measured_keys()
    assert 0 < len(partial) < len(anchors)
    report = profile_model(r20, LatencyTable.load(tmp_path, "host", create=True),
                           LocalRunner(protocol=FAST), calibrate=False, progress=False)
    assert report.reused == len(partial)
    final = LatencyTable.load(tmp_path, "host")
    assert final.measured_keys() == set(anchors)
    # every anchor was read from a whole-model profile, none timed alone
    assert report.in_context == report.timed and len(plans) <= 49
    assert all(e.timing == "in_context" and len(e.samples_ms) == 3
               for e in final.rows.values() if e.source == "measured")


class _CountingRunner(LocalRunner):
    """Counts end-to-end calibration rounds; dies on call ``die_at`` (1-based) if given."""

    def __init__(self, die_at: int | None = None) -> None:
        super().__init__(protocol=FAST)
        self.die_at, self.calls, self.rounds = die_at, 0, 0

    def time_models(self, models, rounds, seconds, spread=None):
        self.calls += 1
        if self.calls == self.die_at:
            raise _Killed()
        self.rounds += rounds
        return super().time_models(models, rounds, seconds, spread)


def test_calibration_rounds_survive_a_kill(tmp_path, r20):
    with pytest.raises(_Killed):
        profile_model(r20, LatencyTable.load(tmp_path, "host", create=True), _CountingRunner(die_at=5),
                      progress=False)
    again = LatencyTable.load(tmp_path, "host", create=True)
    assert [r.rounds for r in again.pending_calibration] == [1, 1, 1, 1]  # one round per call
    runner = _CountingRunner()
    report = profile_model(r20, again, runner, progress=False)
    # only the round in flight is timed again (plus rounds re-run if the machine's speed moved)
    assert runner.rounds == 5 + report.extra_rounds
    final = LatencyTable.load(tmp_path, "host")
    points = [p for p in final.meta.calibration if p.model == r20.model_key]
    assert len(points) == 11 and all(p.rounds == 9 + report.extra_rounds for p in points)
    assert final.pending_calibration == []
    # the spread of single runs is kept (journaled rounds included): the p90 is predicted from it
    assert all(p.p90_ms is not None and p.p90_ms >= p.measured_ms for p in points)
    pred = LatencyPredictor(r20, final)
    plan = r20.space.uniform_plan(0.3)
    median_ms = pred.predict_ms(plan)
    pred.use_stat("p90")
    assert pred.stat == "p90" and pred.predict_ms(plan) == pytest.approx(median_ms * pred.p90_ratio)
    assert pred.p90_ratio >= 1.0
    with pytest.raises(ConfigError, match="p95"):
        pred.use_stat("p95")
    for p in final.meta.calibration:  # a table built before the spread was kept
        p.p90_ms = None
    with pytest.raises(TableError, match="no run-to-run spread"):
        LatencyPredictor(r20, final).use_stat("p90")


class _SpeedChangeRunner(LocalRunner):
    """End-to-end rounds: the first at full speed, then 20% slower until call
    ``settle_at`` (1-based), full speed again from there."""

    def __init__(self, settle_at: int) -> None:
        super().__init__(protocol=FAST)
        self.settle_at, self.calls = settle_at, 0

    def time_models(self, models, rounds, seconds, spread=None):
        self.calls += 1
        slow = 1 < self.calls < self.settle_at
        if spread is not None:
            spread.extend([1.1] * len(models))
        return [(i + 1) * (1.2 if slow else 1.0) for i in range(len(models))]


def test_rounds_are_rerun_when_the_machine_speed_moved(tmp_path, r20):
    table = LatencyTable.load(tmp_path, "host", create=True)
    runner = _SpeedChangeRunner(settle_at=12)
    report = profile_model(r20, table, runner, progress=False)
    # each model's fastest round had no twin within 5% until the machine settled
    assert report.extra_rounds >= 1 and runner.calls == 12 and report.unsteady_models == []
    points = sorted((p for p in table.meta.calibration if p.model == r20.model_key), key=lambda p: p.measured_ms)
    # the median round is predicted (10 of the 12 rounds ran slow); the build's swing is kept
    assert [p.measured_ms for p in points] == pytest.approx([1.2 * (i + 1) for i in range(11)])
    assert [p.min_ms for p in points] == pytest.approx([i + 1 for i in range(11)])
    assert [p.max_ms for p in points] == pytest.approx([1.2 * (i + 1) for i in range(11)])

    never = _SpeedChangeRunner(settle_at=10**6)
    report = profile_model(r20, LatencyTable.load(tmp_path / "b", "host", create=True), never, progress=False)
    assert report.extra_rounds == 9 and len(report.unsteady_models) == 11  # bounded: at most as many again


def test_second_model_extends_instead_of_restarting(tmp_path, r20):
    table = LatencyTable.load(tmp_path, "host", create=True)
    profile_model(r20, table, LocalRunner(protocol=FAST), calibrate=False, progress=False)
    r56 = analyze(load_model("resnet56"))
    report = profile_model(r56, LatencyTable.load(tmp_path, "host"), LocalRunner(protocol=FAST),
                           calibrate=True, progress=False)
    assert report.reused > 0  # resnet56 shares all its kernel shapes with resnet20
    assert report.timed < report.reused
    final = LatencyTable.load(tmp_path, "host")
    assert {"resnet20@1x3x32x32", "resnet56@1x3x32x32"} <= set(final.meta.models)
    assert sum(p.model == "resnet56@1x3x32x32" for p in final.meta.calibration) >= 5


def test_anchors_other_builds_left_alone_or_interpolated_are_retimed_in_context(tmp_path, r20):
    """A kernel costs what its neighbours let it: an anchor that another model's build timed
    alone, or interpolated, is timed again inside this model's profiles; interpolated rows
    follow their anchors."""
    table = LatencyTable.load(tmp_path, "host", create=True)
    profile_model(r20, table, LocalRunner(protocol=FAST), calibrate=False, progress=False)
    anchors = sorted(anchor_keys(r20, 5, BLOCK))
    table = LatencyTable.load(tmp_path, "host")
    alone, guessed = anchors[:3], anchors[3:5]
    for k in alone:  # as a micro-model build would have left them
        table.rows[k] = replace(table.rows[k], method="micro model: timed alone", timing="micro", samples_ms=())
    for k in guessed:
        table.put(k, 99.0, "interpolated", "linear over another model's grid")
    stale = next(k for k, e in table.rows.items() if e.source == "interpolated" and k not in guessed)
    table.rows[stale] = replace(table.rows[stale], latency_ms=99.0)
    table.save()
    report = profile_model(r20, LatencyTable.load(tmp_path, "host"), LocalRunner(protocol=FAST),
                           calibrate=False, progress=False)
    assert report.timed == 5 and report.reused == len(anchors) - 5
    final = LatencyTable.load(tmp_path, "host")
    for k in alone + guessed:
        assert final.rows[k].in_context and final.rows[k].latency_ms < 1.0
    assert final.rows[stale].latency_ms < 1.0  # recomputed from its anchors


def test_off_its_grid_a_model_is_predicted_from_its_own_context(tmp_path, r20):
    """A signature another model measured among its own neighbours is kept in the table,
    but this model, off its anchors, is predicted from its own grid."""
    table = LatencyTable.load(tmp_path, "host", create=True)
    profile_model(r20, table, LocalRunner(protocol=FAST), calibrate=False, progress=False)
    table = LatencyTable.load(tmp_path, "host")
    clean = LatencyPredictor(r20, table)
    plan = next(p for p in (r20.space.uniform_plan(r / 20) for r in range(16))
                if {"measured", "interpolated"} <= {kt.source for kt in clean.kernel_times(p)})
    kernels = clean.kernel_times(plan)
    k = next(kt.key for kt in kernels if kt.source == "interpolated")
    assert k not in anchor_keys(r20, 5, BLOCK)
    table.put(k, 99.0, "measured", "in context (per-node profile of another model)", timing="in_context")
    pred = LatencyPredictor(r20, table)
    assert pred.kernel_sum_ms(plan) == pytest.approx(clean.kernel_sum_ms(plan))
    assert table.rows[k].latency_ms == 99.0
    # an anchor measured elsewhere is this model's measurement: used as is
    a = next(kt.key for kt in kernels if kt.source == "measured")
    table.put(a, 99.0, "measured", "in context (per-node profile of another model)", timing="in_context")
    assert LatencyPredictor(r20, table).kernel_sum_ms(plan) > 90


def test_calibration_follows_the_table_as_it_is_now(tmp_path, r20):
    """Calibration points keep their plan, so their kernel sums are recomputed when another
    build changes shared kernels: scaling every kernel leaves the prediction where it was."""
    table = LatencyTable.load(tmp_path, "host", create=True)
    profile_model(r20, table, LocalRunner(protocol=FAST), calibrate=True, progress=False)
    table = LatencyTable.load(tmp_path, "host")
    plan = r20.space.uniform_plan(0.3)
    before = LatencyPredictor(r20, table)
    for k, e in table.rows.items():
        table.rows[k] = replace(e, latency_ms=2.0 * e.latency_ms)
    after = LatencyPredictor(r20, table)
    assert after.kernel_sum_ms(plan) == pytest.approx(2 * before.kernel_sum_ms(plan))
    assert after.predict_ms(plan) == pytest.approx(before.predict_ms(plan), rel=1e-6)
    assert after.scale == pytest.approx(before.scale / 2, rel=1e-6)
    # a point written before plans were stored keeps its recorded sum
    table.meta.calibration = [replace(p, keep=None) for p in table.meta.calibration]
    assert LatencyPredictor(r20, table).scale == pytest.approx(before.scale, rel=1e-6)


def test_worker_runner_agrees_with_local_and_survives_a_dead_worker(tmp_path):
    a = analyze(load_model("demo"))
    keys = sorted(anchor_keys(a, 2, BLOCK))[:6]
    from hwprune.devices._runner import MicroModel
    from hwprune.latency._micro import micro_model
    from hwprune.runtimes.kernels import KernelSig

    models = [MicroModel(k, micro_model(KernelSig.from_key(k))) for k in keys]
    proto = TimingProtocol(warmup=3, repeats=30, min_time_s=0.0)
    local = {m.key: m.median_ms for m in LocalRunner(protocol=proto).measure(models)}
    with WorkerRunner(f"{sys.executable} -m hwprune worker", protocol=proto) as w:
        facts = w.describe()
        remote = {m.key: m.median_ms for m in w.measure(models)}
        assert facts["runtime"] == "onnxruntime" and facts["runner"] == "worker"
        nodes = w.profile_nodes(a.cost.onnx_models[0], 5)  # in-context profiling works remotely too
        assert all(any(n in nodes for n in t.runtime_names()) for t in a.templates)
        w.proc.kill()  # the device disappears; the runner restarts it and goes on
        again = list(w.measure(models[:2]))
    for k in keys:
        assert 0.33 < remote[k] / local[k] < 3.0, (k, remote[k], local[k])
    assert all(m.error is None for m in again)


def test_worker_that_never_answers_fails_fast():
    from hwprune.errors import DeviceError, DeviceTimeoutError

    w = WorkerRunner(f"{sys.executable} -c 'import time; time.sleep(30)'", start_timeout_s=1.0)
    with pytest.raises((DeviceError, DeviceTimeoutError)):
        w.prepare()
    w.close()


def test_stale_table_is_moved_aside_not_mixed(tmp_path, r20):
    table = LatencyTable.load(tmp_path, "host", create=True)
    profile_model(r20, table, LocalRunner(protocol=FAST), calibrate=False, progress=False)
    t = LatencyTable.load(tmp_path, "host")
    t.meta.measured_on["cpu"] = "Some Other CPU"
    t.save()
    report = profile_model(r20, LatencyTable.load(tmp_path, "host"), LocalRunner(protocol=FAST),
                           calibrate=False, progress=False)
    assert report.stale_note and "cpu" in report.stale_note
    assert report.reused == 0 and report.timed == len(anchor_keys(r20, 5, BLOCK))
    assert list((tmp_path / "stale").glob("host-*.csv.gz"))


def test_worker_builds_a_table_that_agrees_with_local(tmp_path, r20):
    """The same table built through 'hwprune worker' (a subprocess here, ssh in real use)."""
    import statistics

    proto = TimingProtocol(warmup=3, repeats=20, min_time_s=0.0)
    local = LatencyTable.load(tmp_path / "local", "host", create=True)
    profile_model(r20, local, LocalRunner(protocol=proto), calibrate=False, progress=False)
    remote = LatencyTable.load(tmp_path / "remote", "host", create=True)
    with WorkerRunner(f"{sys.executable} -m hwprune worker", protocol=proto) as w:
        rep = profile_model(r20, remote, w, calibrate=False, progress=False)
    assert rep.in_context == rep.timed > 0
    a, b = LatencyTable.load(tmp_path / "local", "host"), LatencyTable.load(tmp_path / "remote", "host")
    assert a.measured_keys() == b.measured_keys()
    ratios = [b.rows[k].latency_ms / a.rows[k].latency_ms for k in a.measured_keys()]
    assert 0.75 < statistics.median(ratios) < 1.33
    assert sum(0.5 < r < 2.0 for r in ratios) >= 0.9 * len(ratios)
    assert b.meta.measured_on["runner"] == "worker"


def test_channel_block_is_read_from_the_runtime():
    b = channel_block()
    assert b in (1, 2, 4, 8, 16, 32, 64)
    assert channel_block("extended") == 1  # the blocked (NCHWc) rewrite only runs at level 'all'


def test_anchors_and_interpolation_follow_the_channel_blocks():
    from hwprune.latency._grid import anchor_values as _anchor_values, bracket as _bracket, padded as _padded

    choices = list(range(8, 129, 8))
    # one anchor per padded size; aligned counts represent their block; 8 < 16 stays itself
    assert _anchor_values(choices, 20, 16) == [8, 16, 32, 48, 64, 80, 96, 112, 128]
    assert _anchor_values(choices, 5, 16) == [8, 32, 64, 96, 128]
    assert _anchor_values(choices, 5, 1) == [8, 40, 72, 96, 128]  # evenly over all 16 counts
    assert [_padded(c, 16) for c in (3, 8, 16, 17, 56, 64)] == [3, 8, 16, 32, 64, 64]
    # 56 channels cost what 64 do: all the weight on the 64 anchor, none on 48
    assert _bracket([8, 16, 32, 48, 64], 56, 16) == (48, 64, 1.0)
    assert _bracket([8, 16, 32, 48, 64], 56, 1) == (48, 64, 0.5)
    lo, hi, w = _bracket([8, 32, 64, 96, 128], 72, 16)
    assert (lo, hi) == (64, 96) and w == pytest.approx(0.5)  # 72 pads to 80, half way


def test_interleaved_timing_gives_one_value_per_model_and_orders_them():
    from hwprune.runtimes.ort import OrtRuntime
    from hwprune.onnx_export import to_onnx_bytes

    a = analyze(load_model("demo"))
    rt = OrtRuntime()
    small, dense = (rt.session(to_onnx_bytes(a.space.apply(p), a.lm.input_shape))
                    for p in (a.space.smallest_plan(), a.space.dense_plan()))
    ms = rt.time_sessions([small, dense, small], rounds=3, seconds=0.1)
    assert len(ms) == 3 and all(m > 0 for m in ms)
    assert ms[1] > 1.5 * max(ms[0], ms[2])


def test_each_anchor_design_covers_every_pair_among_other_neighbours(r20):
    """Every variant of the Latin-square design times every anchor combination of every
    kernel; the variants put the kernels among different neighbours."""
    wanted = set(anchor_keys(r20, 5, BLOCK))
    designs = [anchor_plans(r20, 5, BLOCK, variant) for variant in range(3)]
    groups = r20.space.groups
    for plans in designs:
        covered = set()
        for keep in plans:
            full = r20.space.full_keep(r20.space._plan(keep))
            vec = [full[g.name] for g in groups]
            covered |= {t.sig(vec).key for t in r20.templates}
        assert wanted <= covered
    as_sets = [{tuple(sorted(k.items())) for k in plans} for plans in designs]
    assert as_sets[0] != as_sets[1] and as_sets[1] != as_sets[2]


def test_time_models_keeps_sessions_and_orders_models():
    from hwprune.devices._runner import MicroModel
    from hwprune.onnx_export import to_onnx_bytes

    a = analyze(load_model("demo"))
    models = [MicroModel(name, to_onnx_bytes(a.space.apply(p), a.lm.input_shape))
              for name, p in (("small", a.space.smallest_plan()), ("dense", a.space.dense_plan()))]
    runner = LocalRunner(protocol=FAST)
    with runner:
        spread: list = []
        first = runner.time_models(models, rounds=2, seconds=0.1, spread=spread)
        assert len(spread) == 2 and all(r >= 1.0 for r in spread)  # p90/median of each model
        sessions = dict(runner._sessions)
        second = runner.time_models(models, rounds=2, seconds=0.1)
        assert all(runner._sessions[k] is sessions[k] for k in sessions)  # loaded once
    assert first[1] > 1.5 * first[0] and second[1] > 1.5 * second[0]
    # the generic protocol (rounds of measure()) answers the same question
    from hwprune.devices._runner import Runner

    generic = Runner.time_models(LocalRunner(protocol=FAST), models, rounds=2, seconds=0.1)
    assert generic[1] > 1.5 * generic[0]


class _TallyRunner(LocalRunner):
    """Counts whole-model profiles, kernels timed alone and end-to-end calibration timings."""

    def __init__(self) -> None:
        super().__init__(protocol=FAST)
        self.profiles = self.micro = self.e2e = 0

    def profile_nodes(self, onnx, runs):
        self.profiles += 1
        return super().profile_nodes(onnx, runs)

    def measure(self, models):
        for m in super().measure(models):
            self.micro += 1
            yield m

    def time_models(self, models, rounds, seconds, spread=None):
        self.e2e += 1
        return super().time_models(models, rounds, seconds, spread)


def test_profiling_a_complete_table_again_times_nothing(tmp_path, demo_analysis):
    first = _TallyRunner()
    profile_model(demo_analysis, LatencyTable.load(tmp_path, "host", create=True), first, progress=False)
    assert first.profiles > 0 and first.e2e > 0
    saved = LatencyTable.load(tmp_path, "host")  # from disk: what a second 'hwprune profile' sees
    before = dict(saved.rows)
    again = _TallyRunner()
    report = profile_model(demo_analysis, saved, again, progress=False)
    assert (again.profiles, again.micro, again.e2e) == (0, 0, 0)
    assert report.timed == 0 and report.reused == len(anchor_keys(demo_analysis, 5, BLOCK))
    assert report.calibration_points == 11
    assert LatencyTable.load(tmp_path, "host").rows == before  # nothing re-timed, nothing re-interpolated
