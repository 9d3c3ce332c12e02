"""Does the searched model keep its latency budget on a plain stopwatch?

Runs ``hwprune search`` on the demo task at two budgets (50% and 30% of the dense model's
predicted latency) for several seeds, then times every winner's ``model.onnx`` with the
standard stopwatch (``hwprune bench``: a fresh process per reading, the profile's runtime
settings, the median of single runs). Each winner gets ``--readings`` readings in passes
over all winners, minutes apart; the fastest (hwprune predicts the otherwise idle
machine) is compared with the budget, and the median and the first reading alone are
reported beside it (one reading on a shared VM moves by 20-70%).

The searches are short (few trials and fine-tune steps): the point is the latency of
what the search picks, not its accuracy (``search_quality.py`` measures that).

    python benchmarks/budget_check.py                      # 2 budgets x 10 seeds
    python benchmarks/budget_check.py --seeds 3 --budgets 50%

Writes benchmarks/results/budget_check.csv (one row per search) and .md (the summary).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import pandas as pd
from _report import machine_line, md_table

from hwprune._paths import tables_dir
from hwprune.devices import LocalRunner, load_profile
from hwprune.latency import LatencyTable, profile_model
from hwprune.latency._drift import measure_drift
from hwprune.models import load_model
from hwprune.pruning import analyze
from hwprune.runtimes.timing import TimingProtocol
from hwprune.search import run_search

OUT = Path(__file__).parent / "results"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="host")
    ap.add_argument("--budgets", nargs="+", default=["50%", "30%"])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--finetune-steps", type=int, default=20)
    ap.add_argument("--readings", type=int, default=3)
    ap.add_argument("--tables", help="table folder, profiled into when the demo is missing (default WORK_DIR/tables)")
    ap.add_argument("--work", default="hwprune-work/budget-check", help="run directories go here")
    args = ap.parse_args()

    profile = load_profile(args.device)
    runtime = profile.local_runtime()
    directory = tables_dir(args.tables)
    analysis = analyze(load_model("demo"))
    table = LatencyTable.load(directory, profile.name, create=True)
    if analysis.model_key not in table.meta.models:
        with LocalRunner(runtime, protocol=TimingProtocol(warmup=10, repeats=50, min_time_s=0.1)) as runner:
            profile_model(analysis, table, runner, progress=sys.stderr.isatty())
    started = time.perf_counter()
    runs = []
    for budget in args.budgets:
        for seed in range(args.seeds):
            run_dir = Path(args.work) / f"demo-{budget.rstrip('%')}pct-seed{seed}"
            s = run_search(model="demo", device=profile.name, latency=budget, trials=args.trials, seed=seed,
                           run_dir=run_dir, resume=run_dir.exists(), finetune_steps=args.finetune_steps,
                           finalists=1, calibration_images=128, val_images=500, tables=directory,
                           measure=False, progress=False)
            runs.append({"budget": budget, "seed": seed, "budget_ms": s["budget"]["latency_ms"],
                         "predicted_ms": s["predicted_latency_ms"], "onnx": run_dir / "model.onnx",
                         "readings": []})
            print(f"{budget} seed {seed}: budget {s['budget']['latency_ms']:.4f} ms, "
                  f"predicted {s['predicted_latency_ms']:.4f} ms", file=sys.stderr, flush=True)
    for _ in range(args.readings):
        for r in runs:
            r["readings"].append(runtime.bench([str(r["onnx"])], runs=30, min_time_s=1.0)[0]["median_ms"])
    # how fast the machine runs now against the table's build: a move between the build and
    # the readings shows in every prediction's error
    drift = measure_drift(LatencyTable.load(directory, profile.name), runtime, analysis.model_key)
    rows = []
    for r in runs:
        measured, middle = min(r["readings"]), statistics.median(r["readings"])
        rows.append({"budget": r["budget"], "seed": r["seed"], "budget_ms": r["budget_ms"],
                     "predicted_ms": r["predicted_ms"], "measured_ms": measured,
                     "within_budget": measured <= r["budget_ms"], "median_reading_ms": middle,
                     "median_reading_within_budget": middle <= r["budget_ms"],
                     "first_reading_ms": r["readings"][0], "first_within_budget": r["readings"][0] <= r["budget_ms"],
                     "error_pct": 100 * (r["predicted_ms"] - measured) / measured,
                     "readings_ms": " ".join(f"{x:.4f}" for x in r["readings"])})
    df = pd.DataFrame(rows)
    OUT.mkdir(exist_ok=True)
    df.to_csv(OUT / "budget_check.csv", index=False)
    summary = df.groupby("budget", sort=False).agg(
        seeds=("seed", "count"), within_budget=("within_budget", "sum"),
        median_reading_within=("median_reading_within_budget", "sum"),
        first_reading_within=("first_within_budget", "sum"), mean_error_pct=("error_pct", "mean"),
        max_over_budget_pct=("measured_ms", lambda m: float(100 * (m / df.loc[m.index, "budget_ms"] - 1).max())),
    ).reset_index()
    text = "\n".join([
        f"# Demo search winners against their budget ({profile.name})", "",
        f"{machine_line(runtime, profile.threads)} Searches: {args.trials} trials, 1 finalist, "
        f"{args.finetune_steps} fine-tune steps. Measured: the standard stopwatch, {args.readings} fresh-process "
        "readings per winner in passes; the fastest (the otherwise idle machine) is compared with the budget, "
        "the median reading and the first reading beside it.", "",
        md_table(summary), "",
        f"Drift after the readings: the table's reference model ran {drift.ratio:.2f}x its build-time latency "
        f"({'significant' if drift.significant else 'inside the build-time range'}; each search applied "
        "the drift it measured at its start, where significant)."
        if drift else "No reference model in the table: drift not measured.",
        "",
        f"Wall time {time.perf_counter() - started:.0f} s. `error_pct` in the CSV is predicted vs measured."]) + "\n"
    (OUT / "budget_check.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
