"""The search loop on the demo model with a small measured host table.

The table is built once per module into a temp dir (a few seconds: ``profile_model``
with a short timing protocol). Most tests score candidates with a cheap fake scorer that
counts its calls; one runs ``run_search`` end to end on a tiny synthetic task.
"""
from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path

import optuna
import pandas as pd
import pytest
import torch

from hwprune.pruning import analyze
from hwprune.devices import LocalRunner
from hwprune.runtimes.timing import TimingProtocol
from hwprune.errors import BudgetError, ConfigError
from hwprune.latency import LatencyTable, open_predictor
from hwprune.latency._profiler import profile_model
from hwprune.models import load_model
from hwprune.search import Budget, PlanSearch, load_pruned, run_search, widest_uniform_plan
from hwprune.devices import load_profile
from hwprune.latency._store import table_warning
from hwprune.search._study import INFEASIBLE_SCORE, uniform_seed_plans

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tables(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("tables")
    lm = load_model("demo", pretrained=False)
    runner = LocalRunner(protocol=TimingProtocol(warmup=3, repeats=10, min_time_s=0.01))
    profile_model(analyze(lm), LatencyTable.load(d, "host", create=True), runner, progress=False)
    return d


@pytest.fixture(scope="module")
def setup(tables):
    analysis = analyze(load_model("demo", pretrained=False))
    predictor = open_predictor(analysis, "host", tables=tables)
    dense_ms = predictor.predict_ms(analysis.space.dense_plan())
    return analysis, predictor, dense_ms


class CountingScorer:
    """Deterministic stand-in for accuracy: wider is better, with diminishing returns.

    Records every plan it sees and whether the plan fit the budget, so tests can check
    that over-budget plans never reach it.
    """

    def __init__(self, analysis, predictor, budget: Budget) -> None:
        self.analysis, self.predictor, self.budget = analysis, predictor, budget
        self.calls = 0
        self.over_budget = 0

    def __call__(self, plan) -> float:
        self.calls += 1
        ms = self.predictor.predict_ms(plan)
        mem = self.analysis.cost.cost(plan).memory_bytes
        if not self.budget.fits(ms, mem):
            self.over_budget += 1
        keep = self.analysis.space.full_keep(plan)
        return sum(math.sqrt(k) for k in keep.values()) / 100.0


def _search(setup, run_dir, latency="50%", memory=None, **kw):
    analysis, predictor, dense_ms = setup
    dense_mem = analysis.cost.cost(analysis.space.dense_plan()).memory_bytes
    budget = Budget.parse(latency, memory, dense_ms, dense_mem)
    scorer = CountingScorer(analysis, predictor, budget)
    kw.setdefault("progress", False)
    return PlanSearch(analysis, predictor, budget, scorer, run_dir=run_dir, **kw), scorer


@pytest.mark.parametrize("latency, memory", [("50%", None), ("30%", None), ("80%", "40%")])
def test_best_plan_fits_budget_by_prediction(setup, tmp_path, latency, memory) -> None:
    search, scorer = _search(setup, tmp_path, latency, memory, seed=1)
    out = search.run(trials=12)
    assert out.evaluated == 12 and scorer.calls == 12
    assert out.best is not None
    b = search.budget
    assert out.best.predicted_ms <= b.latency_ms
    if b.memory_bytes is not None:
        assert out.best.memory_bytes <= b.memory_bytes
    # the best is the most accurate of the trials within budget, never an infeasible one
    scored = [r for r in out.records if r.scored]
    assert out.best.val_accuracy == max(r.val_accuracy for r in scored)
    assert all(r.predicted_ms <= b.latency_ms for r in scored)


def test_uniform_baseline_enqueued_first_and_feasible(setup, tmp_path) -> None:
    search, _ = _search(setup, tmp_path, "50%", seed=0)
    out = search.run(trials=5)
    first = min(out.records, key=lambda r: r.number)
    assert first.number == 0 and first.source == "uniform" and first.feasible and first.evaluated
    widest = widest_uniform_plan(search.space, search.fits)
    # the widest fitting uniform plan raised onto the counts the search uses; when the raised
    # plan breaks the budget (the study can only hold those counts), the next narrower one
    snapped = [search.codec.snap(p) for p in uniform_seed_plans(search.space, search.fits, count=8)]
    expected = next(p for p in snapped if search.fits(p))
    assert first.keep == search.space.full_keep(expected)
    if search.fits(search.codec.snap(widest)):
        assert all(k >= w for k, w in zip(first.keep.values(), search.space.full_keep(widest).values()))
    uniform = sorted((r for r in out.records if r.source == "uniform"), key=lambda r: r.number)
    assert [r.number for r in uniform] == [0, 1, 2]
    # the widest fitting one first, then narrower ones (by width: a quick test table can
    # predict two neighbouring uniform plans 0.3% out of order); every wider uniform plan
    # is over budget
    for wider, narrower in zip(uniform, uniform[1:]):
        assert all(narrower.keep[g] <= k for g, k in wider.keep.items()) and narrower.keep != wider.keep
    assert uniform[0].predicted_ms >= 0.98 * max(r.predicted_ms for r in uniform)
    ratio = widest.meta["uniform_ratio"]
    if ratio > 0:  # (the baseline itself is the uniform plan, not its snapped form)
        assert not search.fits(search.space.uniform_plan(round(ratio - 0.05, 2)))


def test_infeasible_trials_never_evaluate(setup, tmp_path) -> None:
    search, scorer = _search(setup, tmp_path, "30%", seed=3)
    out = search.run(trials=10)
    infeasible = [r for r in out.records if r.state == "COMPLETE" and not r.feasible]
    assert infeasible, "a 30% budget should reject some random proposals"
    assert scorer.over_budget == 0
    assert scorer.calls == out.evaluated == 10
    assert all(not r.evaluated and r.val_accuracy is None for r in infeasible)
    values = {t.number: t.value for t in search.study.trials}
    assert all(values[r.number] == INFEASIBLE_SCORE for r in infeasible)
    # Optuna sees them as infeasible too (constraints > 0), so its own best agrees with ours
    assert search.study.best_trial.number == out.best.number


def test_resume_continues_from_finished_trials(setup, tmp_path) -> None:
    first, scorer1 = _search(setup, tmp_path, "50%", seed=7)
    out1 = first.run(trials=3)
    before = {r.number: (r.keep, r.val_accuracy, r.predicted_ms) for r in out1.records if r.evaluated}
    assert len(before) == 3 and scorer1.calls == 3
    del first  # "killed": nothing is flushed beyond what the journal already holds

    with pytest.raises(ConfigError, match="--resume"):
        _search(setup, tmp_path, "50%", seed=7)
    second, scorer2 = _search(setup, tmp_path, "50%", seed=7, resume=True)
    out2 = second.run(trials=6)
    assert out2.evaluated == 6 and scorer2.calls == 3  # only the missing three were evaluated
    after = {r.number: (r.keep, r.val_accuracy, r.predicted_ms) for r in out2.records if r.evaluated}
    assert len(after) == 6
    assert {n: after[n] for n in before} == before
    assert (tmp_path / "study.journal").is_file()


def test_resume_requeues_a_trial_left_running(setup, tmp_path) -> None:
    first, _ = _search(setup, tmp_path, "50%", seed=2)
    first.run(trials=2)
    dists = {g.name: optuna.distributions.IntDistribution(0, len(g.choices) - 1)
             for g in first.space.groups}
    orphan = first.study.ask(fixed_distributions=dists)  # in flight when the process died
    assert first.study.trials[orphan.number].state == optuna.trial.TrialState.RUNNING
    second, _ = _search(setup, tmp_path, "50%", seed=2, resume=True)
    out = second.run(trials=4)
    trials = second.study.trials
    assert trials[orphan.number].state == optuna.trial.TrialState.FAIL
    requeued = [t for t in trials if t.user_attrs.get("requeued_from") == orphan.number]
    assert len(requeued) == 1 and requeued[0].state == optuna.trial.TrialState.COMPLETE
    assert requeued[0].params == orphan.params
    assert out.evaluated == 4 and any("re-queued 1" in n for n in out.notes)


def test_resume_refuses_a_different_budget(setup, tmp_path) -> None:
    search, _ = _search(setup, tmp_path, "50%", seed=0)
    search.run(trials=2)
    with pytest.raises(ConfigError):
        _search(setup, tmp_path, "40%", seed=0, resume=True)


def test_shared_rdb_storage(setup, tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    a, sa = _search(setup, tmp_path / "a", "50%", seed=0, storage_url=url)
    a.run(trials=3)
    b, sb = _search(setup, tmp_path / "b", "50%", seed=0, storage_url=url)
    out = b.run(trials=5)  # the study already holds 3: this worker adds 2
    assert out.evaluated == 5 and sa.calls == 3 and sb.calls == 2
    assert not (tmp_path / "a" / "study.journal").exists()


def test_pareto_front(setup, tmp_path) -> None:
    search, _ = _search(setup, tmp_path, "80%", pareto=True, seed=0)
    out = search.run(trials=10)
    assert search.sampler_name == "nsga2" and len(search.study.directions) == 2
    assert out.front and all(r.scored for r in out.front)
    for r in out.front:  # nothing scored dominates a front point
        assert not any(o.val_accuracy > r.val_accuracy and o.predicted_ms < r.predicted_ms
                       for o in out.records if o.scored)
    assert out.best.number in {r.number for r in out.front}


def test_impossible_budget_stops_before_searching(setup, tables, tmp_path, monkeypatch) -> None:
    from hwprune.latency._predict import LatencyPredictor

    # The table was timed moments ago on a shared machine, and its affine calibration can
    # put the smallest plan near (or below) zero; the raw kernel sum is always positive.
    monkeypatch.setattr(LatencyPredictor, "predict_ms", LatencyPredictor.kernel_sum_ms)
    analysis, predictor, _ = setup
    floor_ms = predictor.kernel_sum_ms(analysis.space.smallest_plan())
    with pytest.raises(BudgetError) as err:
        run_search(model="demo", latency=f"{floor_ms / 2:.9f}ms", trials=3,
                   run_dir=tmp_path / "run", tables=tables, progress=False)
    msg = str(err.value)
    assert f"fastest reachable {floor_ms:.4g}ms" in msg, msg
    assert "every group at its floor" in msg and "demo on host" in msg
    with pytest.raises(BudgetError, match="smallest reachable"):
        run_search(model="demo", memory="1KB", trials=3, run_dir=tmp_path / "run",
                   tables=tables, progress=False)
    assert not (tmp_path / "run").exists()


def test_estimated_table_warning_names_profile_command() -> None:
    assert table_warning("measured", load_profile("host"), "demo") is None
    w = table_warning("estimated", load_profile("pixel7"), "demo")
    assert "hwprune profile --device pixel7 --model demo" in w and "--rpc" in w
    w = table_warning("mixed", load_profile("jetson-orin-nano"), "demo")
    assert "--runner 'ssh USER@DEVICE hwprune worker'" in w


_TASK = """
import torch
from torch.utils.data import DataLoader, TensorDataset

num_classes = 10

def _data(n, seed):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=g)
    x = torch.randn(n, 1, 28, 28, generator=g) + y.float()[:, None, None, None] / 5
    return TensorDataset(x, y)

def train_loader():
    return DataLoader(_data(256, 1), batch_size=64, shuffle=True,
                      generator=torch.Generator().manual_seed(0))

def val_loader():
    return DataLoader(_data(128, 2), batch_size=128)

def test_loader():
    return DataLoader(_data(128, 3), batch_size=128)
"""


def test_run_search_writes_a_finished_run_dir(tables, tmp_path) -> None:
    task = tmp_path / "task.py"
    task.write_text(textwrap.dedent(_TASK))
    run_dir = tmp_path / "run"
    result = run_search(model="demo", latency="50%", memory="40%", trials=3, seed=0,
                        run_dir=run_dir, task=str(task), tables=tables, finetune_steps=2,
                        calibration_images=64, val_images=None, progress=False)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and result["status"] == "finished"
    for name in ("plan.json", "model.pt", "model.onnx", "trials.csv", "trials.png", "summary.md",
                 "study.journal"):
        assert (run_dir / name).is_file() and (run_dir / name).stat().st_size > 0, name
    # summary.json is the last file written
    newest = max((p for p in run_dir.iterdir() if p.name != "study.journal"),
                 key=lambda p: p.stat().st_mtime_ns)
    assert newest.name == "summary.json"
    b = summary["budget"]
    assert summary["pruned"]["predicted_ms"] <= b["latency_ms"]
    assert summary["pruned"]["memory_bytes"] <= b["memory_bytes"]
    assert summary["dense"]["measured_ms"] > 0 and summary["pruned"]["measured_ms"] > 0
    # a shared VM's speed moves between the table's build and the search: a drift line may
    # appear (and says whether it was applied); nothing else may
    assert summary["table_kind"] == "measured"
    assert [w for w in summary["warnings"] if "reference model" not in w] == []
    assert 0 <= summary["accuracy"]["test"] <= 1 and summary["search"]["evaluated"] == 3
    assert summary["onnx_max_rel_diff"] < 1e-3
    # the finalists were fine-tuned alike and the one best on validation is the answer
    fin = summary["search"]["finalists"]
    assert len(fin) >= 2 and sum(r["chosen"] for r in fin) == 1
    chosen = next(r for r in fin if r["chosen"])
    assert chosen["val_accuracy"] == max(r["val_accuracy"] for r in fin)
    assert chosen["keep"] == summary["plan_keep"]
    assert summary["accuracy"]["val"] == pytest.approx(chosen["val_accuracy"])
    assert "finalists" in (run_dir / "summary.md").read_text()
    trials = pd.read_csv(run_dir / "trials.csv")
    assert len(trials) == summary["search"]["proposed_total"]
    assert {"number", "state", "predicted_ms", "memory_bytes", "feasible", "val_accuracy",
            "duration_s"} <= set(trials.columns)
    assert any(c.startswith("keep:") for c in trials.columns)
    # the saved model rebuilds from plan.json + model.pt and matches the ONNX export
    model = load_pruned(run_dir)
    import onnxruntime as ort

    x = torch.randn(1, 1, 28, 28)
    sess = ort.InferenceSession(str(run_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    (y_onnx,) = sess.run(None, {"input": x.numpy()})
    with torch.no_grad():
        assert torch.allclose(model(x), torch.from_numpy(y_onnx), atol=1e-4)

    # a second run into the same directory must not clobber the finished one ...
    with pytest.raises(ConfigError, match="--resume"):
        run_search(model="demo", latency="50%", trials=3, run_dir=run_dir, task=str(task),
                   tables=tables, progress=False)
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "finished"
    # ... nor may a resume with another budget; the same one continues the study
    with pytest.raises(ConfigError):
        run_search(model="demo", latency="40%", memory="40%", trials=4, run_dir=run_dir,
                   task=str(task), tables=tables, resume=True, progress=False)
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "finished"
    again = run_search(model="demo", latency="50%", memory="40%", trials=4, seed=0,
                       run_dir=run_dir, task=str(task), tables=tables, finetune_steps=1,
                       calibration_images=64, val_images=None, resume=True, progress=False,
                       measure=False)
    assert again["status"] == "finished" and again["search"]["evaluated"] == 4
    assert again["dense"]["measured_ms"] is None


def test_search_leaves_out_counts_a_wider_count_matches_in_latency(setup, tmp_path) -> None:
    """Channel counts that buy no latency (padding to the SIMD block) are not searched:
    each left-out count has a kept wider count predicted no slower, every kept count is
    faster than all wider kept ones, and with a memory budget nothing is left out."""
    analysis, predictor, _ = setup
    search, _ = _search(setup, tmp_path / "lat", "40%", seed=0)
    space = analysis.space
    dense = space.full_keep(space.dense_plan())

    def ms(g, c):
        return predictor.predict_ms(space._plan({**dense, g: c}))

    dropped = 0
    for g in space.groups:
        kept = search.codec.choices[g.name]
        assert kept[-1] == g.size and set(kept) <= set(g.choices)
        for i, c in enumerate(kept[:-1]):
            assert ms(g.name, c) < min(ms(g.name, w) for w in kept[i + 1:])
        for c in set(g.choices) - set(kept):
            dropped += 1
            assert any(ms(g.name, w) <= ms(g.name, c) for w in kept if w > c)
    if int(predictor.table.meta.get("channel_block") or 1) > 8:  # wider than the count step
        assert dropped > 0
    out = search.run(trials=6)
    for r in out.records:
        assert all(k in search.codec.choices[g] for g, k in r.keep.items())
    mem, _ = _search(setup, tmp_path / "mem", "80%", "60%", seed=0)
    assert all(mem.codec.choices[g.name] == list(g.choices) for g in space.groups)


def test_search_says_each_phase_as_it_goes(tables, tmp_path) -> None:
    """The search is never silent: the budget (and warnings) first, then the search, the
    finalists' fine-tuning and the measurement, as they happen."""
    task = tmp_path / "task.py"
    task.write_text(textwrap.dedent(_TASK))
    lines: list[str] = []
    run_search(model="demo", latency="20ms", trials=2, seed=0, run_dir=tmp_path / "run", task=str(task),
               tables=tables, finetune_steps=1, finalists=2, calibration_images=32, val_images=None,
               progress=False, log=lines.append)
    text = "\n".join(lines)
    order = [text.index(k) for k in ("budget:", "every plan fits it", "search:", "fine-tuning", "measuring")]
    assert order == sorted(order), text
    assert "x the dense model's predicted" in text
