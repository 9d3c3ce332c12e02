"""Search quality on the demo task (Fashion-MNIST) on the host: hwprune vs baselines.

At each latency budget (a share of the dense model's predicted host latency) three
methods pick a pruning plan that fits the budget by prediction:

* ``uniform``: the widest uniform-width plan within budget (every group keeps the same
  share of its channels) - no search;
* ``random``: Optuna's RandomSampler, the same number of evaluated candidates as hwprune
  (proposals over budget are free for both and do not count), no uniform seeding;
* ``hwprune``: the TPE search of ``hwprune search`` (uniform plans enqueued first);
* ``uniform_over`` (a reference, not a method): the next wider uniform plan, which breaks
  the budget. Uniform width moves in coarse steps; a search that beats this one too
  beats uniform width at equal latency, not only within the budget.

Candidates are scored identically (adaptive BN on 512 training images, accuracy on the
first ``--val-images`` validation images). Both searches then end as ``hwprune search``
does: their ``--finalists`` best-scored candidates (hwprune adds the uniform plan, as
its search does) are each fine-tuned (``--finetune-steps`` SGD steps, KD from the dense
model, the same batches in the same order for every plan and seed) and the best on the
validation split wins. The uniform plan gets the same fine-tune. Winners are scored on
the full 10,000-image test set, which no method sees, and timed end to end with
onnxruntime (host profile threads), all winners of a budget and seed together in
interleaved rounds (each keeps its lowest round median, the protocol of the table's
calibration). Repeated for each seed: the seed changes the searches (sampler and candidate
scoring), not the fine-tune, so the uniform plans score the same for every seed and the
spread is the searches' own.

    python benchmarks/search_quality.py                       # the full run (~30 min, 2 cores)
    python benchmarks/search_quality.py --trials 3 --seeds 0 --finetune-steps 5 \\
        --val-images 500 --budgets 50%                        # a smoke test (~2 min)

Writes benchmarks/results/search_quality.csv (one row per budget x seed x method) and
search_quality.md (mean and spread per method and budget, with the settings). Needs the
trained demo weights (hwprune/models/weights/demo_cnn.pt) and Fashion-MNIST
(Debian package dataset-fashion-mnist, or --data DIR). Without a host table holding the
demo model one is profiled into a temporary folder first (about a minute).
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import torch

from hwprune.pruning import analyze
from hwprune.devices import load_profile
from hwprune.errors import TableError
from hwprune.latency import LatencyTable, open_predictor
from hwprune.models import load_model
from hwprune.onnx_export import to_onnx_bytes
from hwprune.rundir import RunDir
from hwprune.search import (UNIFORM_RATIOS, AccuracyScorer, Budget, PlanSearch, finalist_plans,
                            finetune_finalists, widest_uniform_plan)
from hwprune.task import FinetuneRecipe, TaskData, evaluate, load_fashion_mnist

OUT = Path(__file__).parent / "results"
METHODS = ("uniform", "random", "hwprune", "uniform_over")
Log = Callable[[str], None]


def md_table(df: pd.DataFrame) -> str:
    head = "| " + " | ".join(df.columns) + " |"
    sep = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, sep, *body])


def next_wider_uniform(space, plan):
    """The least-pruned uniform plan narrower-pruned than ``plan`` with other channel
    counts: the next step of the uniform baseline, just over the budget."""
    keep = space.full_keep(plan)
    wider = None
    for r in sorted(UNIFORM_RATIOS):
        cand = space.uniform_plan(r)
        if space.full_keep(cand) == keep:
            return wider
        wider = cand
    return None


def uniform_at(ms: float, lo: tuple[float, float], hi: tuple[float, float]) -> float:
    """Uniform-width accuracy at measured latency ``ms``: linear between the uniform plan
    ``lo`` and the next wider one ``hi`` (``(measured_ms, accuracy)`` each); outside them,
    the nearer one (uniform width cannot go between its steps)."""
    (x0, y0), (x1, y1) = sorted([lo, hi])
    if ms <= x0:
        return y0
    if ms >= x1:
        return y1
    return y0 + (y1 - y0) * (ms - x0) / (x1 - x0)


def equal_latency_rows(df: pd.DataFrame) -> list[dict]:
    out = []
    for (budget_text, method), g in df[df["method"].isin(["random", "hwprune"])].groupby(["budget", "method"],
                                                                                        sort=False):
        diffs, eqs = [], []
        for _, r in g.iterrows():
            same = df[(df["budget"] == budget_text) & (df["seed"] == r["seed"])].set_index("method")
            u, o = same.loc["uniform"], same.loc["uniform_over"]
            e = uniform_at(r["measured_ms"], (u["measured_ms"], u["test_accuracy"]),
                           (o["measured_ms"], o["test_accuracy"]))
            eqs.append(e)
            diffs.append(r["test_accuracy"] - e)
        sd = statistics.stdev(diffs) if len(diffs) > 1 else 0.0
        out.append({"budget": budget_text, "method": method,
                    "measured ms": f"{g['measured_ms'].mean():.4g}",
                    "test accuracy": f"{g['test_accuracy'].mean():.4f}",
                    "uniform at that latency": f"{statistics.mean(eqs):.4f}",
                    "difference": f"{statistics.mean(diffs):+.4f} ± {sd:.4f}"})
    return out


def predictor_for(analysis, tables: str | None, log) -> tuple[Any, str]:
    """The host predictor; profiles the demo into a temp folder when no table serves."""
    try:
        return open_predictor(analysis, "host", tables), str(tables or "latency_tables/")
    except TableError as exc:
        log(f"no usable host table ({str(exc).split(';')[0]}); profiling the demo model")
    from hwprune.devices import LocalRunner
    from hwprune.latency import profile_model

    d = Path(tempfile.mkdtemp(prefix="hwprune-bench-tables-"))
    t0 = time.perf_counter()
    runner = LocalRunner(load_profile("host").local_runtime())  # the profile's runtime and threads
    profile_model(analysis, LatencyTable.load(d, "host", create=True), runner, progress=False)
    log(f"profiled in {time.perf_counter() - t0:.0f} s into {d}")
    return open_predictor(analysis, "host", d), str(d)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budgets", nargs="+", default=["50%", "30%"],
                    help="latency budgets (default: 50%% 30%% of the dense predicted latency)")
    ap.add_argument("--trials", type=int, default=24, help="evaluated candidates per search")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--finetune-steps", type=int, default=150)
    ap.add_argument("--finalists", type=int, default=3,
                    help="top candidates of each search fine-tuned before the winner is picked")
    ap.add_argument("--candidate-finetune-steps", type=int, default=0,
                    help="fine-tune steps per candidate before it is scored (both searches)")
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--val-images", type=int, default=2000, help="validation images per candidate")
    ap.add_argument("--calibration-images", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2, help="torch threads (training/scoring)")
    ap.add_argument("--tables", default=None, help="latency table folder (default: the shipped one)")
    ap.add_argument("--data", default=None, help="Fashion-MNIST folder")
    ap.add_argument("--out", type=Path, default=OUT)
    return ap.parse_args(argv)


@dataclass
class Bench:
    """The demo model, its host predictor, the task and the dense reference figures."""

    lm: Any
    analysis: Any
    profile: Any
    predictor: Any
    table_dir: str
    task: TaskData
    dense_ms: float
    dense_test: float
    dense_measured: float

    @property
    def space(self) -> Any:
        return self.analysis.space

    @property
    def dense(self) -> torch.nn.Module:
        return self.lm.model

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.lm.input_shape)


def load_bench(args: argparse.Namespace, log: Log) -> Bench:
    lm = load_model("demo")
    if lm.weights is None:
        log("WARNING: the demo model has no trained weights; accuracies are meaningless")
    analysis = analyze(lm)
    profile = load_profile("host")
    predictor, table_dir = predictor_for(analysis, args.tables, log)
    task = load_fashion_mnist(args.data)
    dense = lm.model.eval()
    dense_ms = predictor.predict_ms(analysis.space.dense_plan())
    dense_test = evaluate(dense, task.test)
    dense_measured = profile.local_runtime().measure_latencies(
        [to_onnx_bytes(dense, tuple(lm.input_shape))], seconds=0.5)[0]["median_ms"]
    log(f"dense: test {dense_test:.4f}, predicted {dense_ms:.4g} ms, measured {dense_measured:.4g} ms "
        f"(table {predictor.table.kind})")
    return Bench(lm, analysis, profile, predictor, table_dir, task, dense_ms, dense_test, dense_measured)


def search_picks(bench: Bench, args: argparse.Namespace, budget_text: str, budget: Budget, seed: int,
                 work: Path, log: Log) -> dict[str, tuple]:
    """Per method: ``(finalists, top search val accuracy, search s, evaluated, proposed)``."""
    space = bench.space
    uniform = widest_uniform_plan(space, lambda p: budget.fits(bench.predictor.predict_ms(p), 0))
    picks: dict[str, tuple] = {"uniform": ([("uniform width", uniform)], None, 0.0, 0, 0)}
    over = next_wider_uniform(space, uniform)
    if over is not None:  # a reference: what uniform width needs to pass the budget
        picks["uniform_over"] = ([("next wider uniform", over)], None, 0.0, 0, 0)
    steps = args.candidate_finetune_steps
    for method, sampler, seeded in (("random", "random", False), ("hwprune", "tpe", True)):
        scorer = AccuracyScorer(space, bench.task, calibration_images=args.calibration_images,
                                val_images=args.val_images, teacher=bench.dense if steps else None,
                                recipe=FinetuneRecipe(steps, lr=args.lr, seed=seed) if steps else None)
        run = RunDir.create(work / f"{budget_text.rstrip('%')}-{seed}-{method}")
        search = PlanSearch(bench.analysis, bench.predictor, budget, scorer, seed=seed, sampler=sampler,
                            enqueue_uniform=seeded, progress=False, run_dir=run.path)
        out = search.run(args.trials)
        best = out.best
        # both searches end as hwprune search does: the top candidates are fine-tuned
        # and the best on validation wins; only hwprune adds the uniform plan
        finalists = finalist_plans(space, out.records, args.finalists, uniform if seeded else None)
        picks[method] = (finalists, best.val_accuracy, out.wall_s, out.evaluated, len(out.records))
        log(f"[{budget_text} seed {seed}] {method}: search {out.wall_s:.0f} s, "
            f"{out.evaluated} evaluated / {len(out.records)} proposed, "
            f"top val {best.val_accuracy:.4f} at {best.predicted_ms:.4g} ms, "
            f"{len(finalists)} finalists")
    return picks


def finetune_picks(bench: Bench, args: argparse.Namespace, budget_text: str, budget: Budget, seed: int,
                   picks: dict[str, tuple]) -> list[tuple[bytes, dict]]:
    """Each method's finalists fine-tuned with the one recipe; its winner as ONNX and a row."""
    space, recipe = bench.space, FinetuneRecipe(args.finetune_steps, lr=args.lr, seed=seed)
    done = []
    for method in [m for m in METHODS if m in picks]:
        finalists, search_val, search_s, evaluated, proposed = picks[method]
        i, model, frows = finetune_finalists(space, finalists, bench.task, bench.dense, recipe=recipe,
                                             calibration_images=args.calibration_images)
        plan = finalists[i][1]
        cost = bench.analysis.cost.cost(plan)
        done.append((to_onnx_bytes(model, bench.shape), {
            "budget": budget_text, "budget_ms": budget.latency_ms, "seed": seed,
            "method": method, "predicted_ms": bench.predictor.predict_ms(plan),
            "search_val_accuracy": search_val,
            "val_accuracy": frows[i]["val_accuracy"], "winner": finalists[i][0],
            "finalists": len(finalists),
            "test_accuracy": evaluate(model, bench.task.test), "params": cost.params, "macs": cost.macs,
            "evaluated": evaluated, "proposed": proposed, "search_s": search_s,
            "finetune_s": sum(r["finetune_s"] for r in frows),
            **{f"keep:{g}": k for g, k in space.full_keep(plan).items()}}))
    return done


def time_winners(bench: Bench, done: list[tuple[bytes, dict]], budget: Budget, log: Log) -> list[dict]:
    """The winners of one budget and seed timed together, in interleaved rounds: equal footing."""
    rows = []
    times = bench.profile.local_runtime().measure_latencies([m for m, _ in done], seconds=1.0)
    for (_, row), t in zip(done, times):
        rows.append({**row, "measured_ms": t["median_ms"]})
        log(f"[{row['budget']} seed {row['seed']}] {row['method']}: test {row['test_accuracy']:.4f}, "
            f"predicted {row['predicted_ms']:.4g} ms, measured {t['median_ms']:.4g} ms "
            f"(budget {budget.latency_ms:.4g} ms)")
    return rows


def run_all(bench: Bench, args: argparse.Namespace, log: Log) -> pd.DataFrame:
    rows: list[dict] = []
    work = Path(tempfile.mkdtemp(prefix="hwprune-bench-runs-"))
    args.out.mkdir(parents=True, exist_ok=True)
    csv_path = args.out / "search_quality.csv"
    try:
        for budget_text in args.budgets:
            budget = Budget.parse(budget_text, None, bench.dense_ms, None)
            for seed in args.seeds:
                picks = search_picks(bench, args, budget_text, budget, seed, work, log)
                done = finetune_picks(bench, args, budget_text, budget, seed, picks)
                rows += time_winners(bench, done, budget, log)
                pd.DataFrame(rows).to_csv(csv_path, index=False)  # partial results survive a kill
    finally:
        shutil.rmtree(work, ignore_errors=True)  # only the searches' study journals
    df = pd.DataFrame(rows)
    df.to_csv(csv_path, index=False)
    return df


def aggregate(df: pd.DataFrame) -> pd.DataFrame:
    def spread(s: pd.Series, fmt: str) -> str:
        vals = list(s)
        sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
        return f"{format(statistics.mean(vals), fmt)} ± {format(sd, fmt)}"

    agg = []
    for (budget_text, method), g in df.groupby(["budget", "method"], sort=False):
        agg.append({"budget": budget_text, "method": method, "seeds": len(g),
                    "test accuracy": spread(g["test_accuracy"], ".4f"),
                    "min test acc": f"{g['test_accuracy'].min():.4f}",
                    "measured ms": spread(g["measured_ms"], ".4g"),
                    "predicted ms": spread(g["predicted_ms"], ".4g"),
                    "budget ms": f"{g['budget_ms'].iloc[0]:.4g}",
                    "search s": f"{g['search_s'].mean():.0f}"})
    return pd.DataFrame(agg)


def write_report(bench: Bench, args: argparse.Namespace, df: pd.DataFrame, wall_s: float) -> None:
    table = md_table(aggregate(df))
    eq = md_table(pd.DataFrame(equal_latency_rows(df))) if {"uniform", "uniform_over"} <= set(df["method"]) else ""
    recipe = FinetuneRecipe(args.finetune_steps, lr=args.lr)
    settings = (f"demo model ({'trained weights' if bench.lm.weights else 'UNTRAINED'}), host "
                f"({bench.profile.threads} onnxruntime thread(s)), table {bench.predictor.table.kind} "
                f"({bench.table_dir}); dense: test {bench.dense_test:.4f}, predicted {bench.dense_ms:.4g} ms, "
                f"measured {bench.dense_measured:.4g} ms. {args.trials} evaluated candidates per search, "
                f"seeds {args.seeds}, {args.val_images} val images per candidate, "
                f"{args.finetune_steps} fine-tune steps (KD alpha {recipe.kd_alpha}, T {recipe.temperature}, "
                f"lr {args.lr}), torch threads {args.threads}; total {wall_s / 60:.1f} min.")
    md = ("# Search quality: hwprune (TPE) vs random search vs uniform width\n\n"
          "Mean ± standard deviation over seeds; test accuracy after identical KD fine-tuning; "
          "measured = onnxruntime end-to-end median on this host.\n\n"
          f"{table}\n\n"
          + (("At equal measured latency: each search's winner against uniform width at its measured "
              "latency (accuracy interpolated between the uniform plan and the next wider one by "
              "their measured latencies; outside them, the nearer one), mean ± std of the "
              f"difference over seeds.\n\n{eq}\n\n") if eq else "")
          + f"{settings}\n\nCommand: `python benchmarks/search_quality.py "
          f"{' '.join(sys.argv[1:])}`\n")
    (args.out / "search_quality.md").write_text(md)
    print(table)
    print()
    if eq:
        print(eq)
        print()
    print(settings)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    t_all = time.perf_counter()
    bench = load_bench(args, log)
    df = run_all(bench, args, log)
    write_report(bench, args, df, time.perf_counter() - t_all)
    return 0


if __name__ == "__main__":
    sys.exit(main())
