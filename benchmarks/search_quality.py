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
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from hwprune.pruning import analyze
from hwprune.devices import load_profile
from hwprune.errors import TableError
from hwprune.latency import LatencyTable, open_predictor
from hwprune.models import load_model
from hwprune.onnx_export import to_onnx_bytes
from hwprune.search._budget import Budget
from hwprune.search._data import load_fashion_mnist
from hwprune.search._run import KD_ALPHA, KD_TEMPERATURE, finalist_plans, finetune_finalists
from hwprune.search._study import UNIFORM_RATIOS, AccuracyScorer, PlanSearch, widest_uniform_plan
from hwprune.search._train import evaluate

OUT = Path(__file__).parent / "results"
METHODS = ("uniform", "random", "hwprune", "uniform_over")


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


def predictor_for(analysis, tables: str | None, log) -> tuple[object, str]:
    """The host predictor; profiles the demo into a temp folder when no table serves."""
    try:
        return open_predictor(analysis, "host", tables), str(tables or "latency_tables/")
    except TableError as exc:
        log(f"no usable host table ({str(exc).split(';')[0]}); profiling the demo model")
    from hwprune.devices import LocalRunner
    from hwprune.latency import profile_model

    d = Path(tempfile.mkdtemp(prefix="hwprune-bench-tables-"))
    t0 = time.perf_counter()
    runner = LocalRunner(threads=load_profile("host").threads)
    profile_model(analysis, LatencyTable.load(d, "host", create=True), runner, progress=False)
    log(f"profiled in {time.perf_counter() - t0:.0f} s into {d}")
    return open_predictor(analysis, "host", d), str(d)


def main() -> int:
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
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    t_all = time.perf_counter()
    lm = load_model("demo")
    if lm.weights is None:
        log("WARNING: the demo model has no trained weights; accuracies are meaningless")
    analysis = analyze(lm)
    space = analysis.space
    profile = load_profile("host")
    predictor, table_dir = predictor_for(analysis, args.tables, log)
    task = load_fashion_mnist(args.data)
    dense = lm.model.eval()
    shape = tuple(lm.input_shape)
    dense_ms = predictor.predict_ms(space.dense_plan())
    dense_test = evaluate(dense, task.test)
    dense_measured = profile.local_runtime().measure_latencies([to_onnx_bytes(dense, shape)], seconds=0.5)[0]["median_ms"]
    log(f"dense: test {dense_test:.4f}, predicted {dense_ms:.4g} ms, measured {dense_measured:.4g} ms "
        f"(table {predictor.table.kind})")

    rows: list[dict] = []
    work = Path(tempfile.mkdtemp(prefix="hwprune-bench-runs-"))
    args.out.mkdir(parents=True, exist_ok=True)
    csv_path = args.out / "search_quality.csv"
    for budget_text in args.budgets:
        budget = Budget.parse(budget_text, None, dense_ms, None)
        for seed in args.seeds:
            picks: dict[str, tuple] = {}
            uniform = widest_uniform_plan(space, lambda p: budget.fits(predictor.predict_ms(p), 0))
            picks["uniform"] = ([("uniform width", uniform)], None, 0.0, 0, 0)
            over = next_wider_uniform(space, uniform)
            if over is not None:  # a reference: what uniform width needs to pass the budget
                picks["uniform_over"] = ([("next wider uniform", over)], None, 0.0, 0, 0)
            for method, sampler, seeded in (("random", "random", False), ("hwprune", "tpe", True)):
                scorer = AccuracyScorer(space, task, calibration_images=args.calibration_images,
                                        val_images=args.val_images, seed=seed,
                                        finetune_steps=args.candidate_finetune_steps,
                                        teacher=dense if args.candidate_finetune_steps else None)
                search = PlanSearch(analysis, predictor, budget, scorer, seed=seed, sampler=sampler,
                                    enqueue_uniform=seeded, progress=False,
                                    run_dir=work / f"{budget_text.rstrip('%')}-{seed}-{method}")
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
            done = []
            for method in [m for m in METHODS if m in picks]:
                finalists, search_val, search_s, evaluated, proposed = picks[method]
                i, model, frows = finetune_finalists(space, finalists, task, dense, steps=args.finetune_steps,
                                                     lr=args.lr, seed=seed,
                                                     calibration_images=args.calibration_images)
                plan = finalists[i][1]
                ft_s = sum(r["finetune_s"] for r in frows)
                test = evaluate(model, task.test)
                cost = analysis.cost.cost(plan)
                done.append((to_onnx_bytes(model, shape), {
                    "budget": budget_text, "budget_ms": budget.latency_ms, "seed": seed,
                    "method": method, "predicted_ms": predictor.predict_ms(plan),
                    "search_val_accuracy": search_val,
                    "val_accuracy": frows[i]["val_accuracy"], "winner": finalists[i][0],
                    "finalists": len(finalists),
                    "test_accuracy": test, "params": cost.params, "macs": cost.macs,
                    "evaluated": evaluated, "proposed": proposed, "search_s": search_s,
                    "finetune_s": ft_s,
                    **{f"keep:{g}": k for g, k in space.full_keep(plan).items()}}))
            # the winners are timed together, in interleaved rounds: equal footing for all
            times = profile.local_runtime().measure_latencies([m for m, _ in done], seconds=1.0)
            for (_, row), t in zip(done, times):
                rows.append({**row, "measured_ms": t["median_ms"]})
                log(f"[{budget_text} seed {seed}] {row['method']}: test {row['test_accuracy']:.4f}, "
                    f"predicted {row['predicted_ms']:.4g} ms, measured {t['median_ms']:.4g} ms "
                    f"(budget {budget.latency_ms:.4g} ms)")
            pd.DataFrame(rows).to_csv(csv_path, index=False)  # partial results survive a kill

    df = pd.DataFrame(rows)
    df.to_csv(csv_path, index=False)
    import shutil

    shutil.rmtree(work, ignore_errors=True)  # only the searches' study journals

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
    table = md_table(pd.DataFrame(agg))
    eq = md_table(pd.DataFrame(equal_latency_rows(df))) if {"uniform", "uniform_over"} <= set(df["method"]) else ""
    wall = time.perf_counter() - t_all
    settings = (f"demo model ({'trained weights' if lm.weights else 'UNTRAINED'}), host "
                f"({profile.threads} onnxruntime thread(s)), table {predictor.table.kind} ({table_dir}); "
                f"dense: test {dense_test:.4f}, predicted {dense_ms:.4g} ms, measured "
                f"{dense_measured:.4g} ms. {args.trials} evaluated candidates per search, "
                f"seeds {args.seeds}, {args.val_images} val images per candidate, "
                f"{args.finetune_steps} fine-tune steps (KD alpha {KD_ALPHA}, T {KD_TEMPERATURE}, "
                f"lr {args.lr}), torch threads {args.threads}; total {wall / 60:.1f} min.")
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
