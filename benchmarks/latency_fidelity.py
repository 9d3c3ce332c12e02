"""Latency fidelity on the host: predicted (table) vs measured end-to-end latency.

For each model, 30 seeded random plans (every group's ratio drawn from [0, 0.7]) are
pruned, exported and timed end to end with onnxruntime (the host profile's threads and
optimization level), and compared with the table's prediction. Plans are timed in
interleaved rounds and each keeps the median of its round medians, so a spell in which the
shared machine runs slow (it happens, 10-40% for tens of seconds) lands on every plan alike
instead of on those that happened to run then. Predictions follow the machine's drift as
``hwprune latency``'s do: the table's reference model is re-timed just before the plans
(a shared VM's speed moves by 10% within the hour, and not alike for every model); the
table's raw values are reported beside. `stopwatch_fidelity.py` checks against fresh
processes.
Tables missing a model are profiled first (the time and number of timed kernels are
reported). Run on a quiet machine: other processes on the cores distort both sides.

    python benchmarks/latency_fidelity.py                 # all four models, 30 plans each
    python benchmarks/latency_fidelity.py --models demo --plans 10

Writes benchmarks/results/latency_fidelity.csv (one row per plan) and .md (summary).
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import pandas as pd
from _report import ensure_profiled, md_table

from hwprune._paths import tables_dir
from hwprune.pruning import analyze
from hwprune.devices import load_profile
from hwprune.latency import LatencyPredictor, LatencyTable
from hwprune.models import load_model
from hwprune.onnx_export import to_onnx_bytes

MODELS = ["resnet18", "mobilenet_v2", "resnet20", "demo"]
OUT = Path(__file__).parent / "results"


def spearman(a: list[float], b: list[float]) -> float:
    ra, rb = pd.Series(a).rank(), pd.Series(b).rank()
    return float(ra.corr(rb))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=MODELS)
    ap.add_argument("--plans", type=int, default=30)
    ap.add_argument("--max-ratio", type=float, default=0.7)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tables", help="table folder (default: the shipped latency_tables/)")
    ap.add_argument("--min-time", type=float, default=2.0, help="seconds of timed runs per plan")
    ap.add_argument("--rounds", type=int, default=10,
                    help="interleaved timing rounds over all plans (the median round median is kept)")
    args = ap.parse_args()

    profile = load_profile("host")
    runtime = profile.local_runtime()
    directory = tables_dir(args.tables)
    rows, summary, builds = [], [], []
    for name in args.models:
        analysis = analyze(load_model(name))
        build = ensure_profiled(analysis, "host", directory, runtime)
        builds += [build] if build else []
        table = LatencyTable.load(directory, "host")
        table.check_fresh(runtime.identity())
        pred = LatencyPredictor(analysis, table)
        rng = random.Random(args.seed)
        plans = [analysis.space.random_plan(rng, 0.0, args.max_ratio) for _ in range(args.plans)]
        pred.predict_ms(plans[0])  # builds the kernel templates once; not part of a prediction
        t0 = time.perf_counter()
        raw = [pred.predict_ms(p) for p in plans]
        predict_us = (time.perf_counter() - t0) / len(plans) * 1e6
        sessions = [runtime.session(to_onnx_bytes(analysis.space.apply(plan), analysis.lm.input_shape))
                    for plan in plans]
        pred.follow_drift(runtime)
        measured = runtime.time_sessions(sessions, rounds=args.rounds, seconds=args.min_time,
                                         progress=sys.stderr.isatty(), statistic="median")
        del sessions
        predicted = [pred.predict_ms(plan) for plan in plans]
        for i, (plan, p, m) in enumerate(zip(plans, predicted, measured)):
            rows.append({"model": name, "plan": i, "predicted_ms": p, "measured_ms": m,
                         "error_pct": 100 * (p - m) / m, "raw_predicted_ms": raw[i],
                         "raw_error_pct": 100 * (raw[i] - m) / m, "macs": analysis.cost.cost(plan).macs})
            print(f"{name} plan {i:2d}: predicted {p:8.3f} ms  measured {m:8.3f} ms  "
                  f"({100 * (p - m) / m:+5.1f}%)", file=sys.stderr)
        errs = [abs(r["error_pct"]) for r in rows if r["model"] == name]
        raw_errs = [abs(r["raw_error_pct"]) for r in rows if r["model"] == name]
        summary.append({"model": name, "input": "x".join(map(str, analysis.lm.input_shape)),
                        "plans": len(plans), "within_10pct": sum(e <= 10 for e in errs),
                        "median_abs_error_pct": statistics.median(errs), "max_abs_error_pct": max(errs),
                        "spearman": spearman(predicted, measured),
                        "spearman_macs": spearman([r["macs"] for r in rows if r["model"] == name], measured),
                        "drift": round(pred.drift.ratio, 3) if pred.drift else None, "rescale": round(pred.rescale, 3),
                        "raw_within_10pct": sum(e <= 10 for e in raw_errs),
                        "calibration": pred.calibration_scope, "predict_us_per_plan": predict_us})
    OUT.mkdir(exist_ok=True)
    df, sm = pd.DataFrame(rows), pd.DataFrame(summary)
    df.to_csv(OUT / "latency_fidelity.csv", index=False)
    allerr = df["error_pct"].abs()
    facts = runtime.facts()
    lines = ["# Latency fidelity on the host", "",
             f"Machine: {facts['cpu']}; onnxruntime {facts['runtime_version']}, "
             f"{facts['threads']} thread(s), graph optimization '{facts['graph_optimization_level']}'. "
             f"Date: {time.strftime('%Y-%m-%d')}. Plans: ratios uniform in [0, {args.max_ratio}] per group, seed {args.seed}.",
             "", md_table(sm), "",
             f"All models: {int((allerr <= 10).sum())}/{len(df)} plans within +-10% "
             f"({(allerr <= 10).mean():.1%}); median absolute error {allerr.median():.2f}%."]
    if builds:
        lines += ["", "Table builds in this run:", "", md_table(pd.DataFrame(builds))]
    lines += ["", "`spearman_macs` is the rank correlation a MAC count would give, for comparison. "
              "`drift`: the model's reference re-timed just before its plans, against the build's median "
              "round; `rescale`: the factor the predictions took (1.0: none; see README, drift); "
              "`raw_within_10pct`: the table's values unscaled."]
    text = "\n".join(lines) + "\n"
    (OUT / "latency_fidelity.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
