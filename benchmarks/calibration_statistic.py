"""Which statistic of a table's calibration rounds predicts the standard stopwatch?

A table's calibration times its 11 calibration models (dense, smallest, uniform 50% and
8 random plans) end to end in short interleaved in-process rounds spread over the build,
and must turn each model's rounds into one number: what ``hwprune bench`` (a fresh
process, the profile's runtime settings, the median of single runs) reports on the
otherwise idle device. This script times the calibration models of each model as a build
does (``--rounds`` rounds in ``--blocks`` blocks) and, after each block, reads every one
with the standard stopwatch in a fresh process; the fastest reading is the idle-device
estimate (the benchmarks' ``measured``). For each candidate statistic of the rounds it
reports the mean and largest error against the fastest and the median reading.

No table is needed: the rounds and the readings are compared directly.

    python benchmarks/calibration_statistic.py                       # ResNet-18, MobileNetV2, MobileNet-v1
    python benchmarks/calibration_statistic.py --models resnet50 --device host

Writes benchmarks/results/calibration_statistic.csv (one row per calibration model, every
round and reading) and .md (the summary). Run on an otherwise idle machine.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import pandas as pd
from _report import machine_line, md_table

from hwprune.devices import LocalRunner, MicroModel, load_profile
from hwprune.latency._calibration import calibration_plans, idle_ms
from hwprune.models import load_model
from hwprune.onnx_export import to_onnx_bytes
from hwprune.pruning import analyze

OUT = Path(__file__).parent / "results"
STATISTICS = {
    "lowest": min,
    "third_lowest": lambda xs: sorted(xs)[min(2, len(xs) - 1)],
    "lower_quartile (used)": idle_ms,
    "median": statistics.median,
}


def measure(name: str, runtime, rounds: int, blocks: int, seconds: float) -> list[dict]:
    """Every calibration model of ``name``: its rounds (as a build times them) and its
    fresh-process readings, one after each block of rounds."""
    analysis = analyze(load_model(name))
    plans = calibration_plans(analysis)
    onnx = [to_onnx_bytes(analysis.space.apply(plan), analysis.lm.input_shape) for _, plan in plans]
    models = [MicroModel(f"e2e:{plan_name}", data) for (plan_name, _), data in zip(plans, onnx)]
    got: list[list[float]] = [[] for _ in plans]
    readings: list[list[float]] = [[] for _ in plans]
    with LocalRunner(runtime) as runner:
        for _ in range(blocks):
            for _ in range(rounds // blocks):
                for i, ms in enumerate(runner.time_models(models, rounds=1, seconds=seconds)):
                    got[i].append(ms)
            for i, r in enumerate(runtime.bench(onnx, warmup=10, runs=30, min_time_s=1.0)):
                readings[i].append(r["median_ms"])
            print(f"{name}: block done", file=sys.stderr, flush=True)
    return [{"model": name, "plan": plan_name, "rounds_ms": json.dumps([round(x, 6) for x in xs]),
             "readings_ms": json.dumps([round(x, 6) for x in rd])}
            for (plan_name, _), xs, rd in zip(plans, got, readings)]


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for model, group in df.groupby("model", sort=False):
        rounds = [json.loads(x) for x in group["rounds_ms"]]
        reads = [json.loads(x) for x in group["readings_ms"]]
        row = {"model": model, "reading_spread_pct": statistics.median(100 * (max(r) / min(r) - 1) for r in reads),
               "round_spread_pct": statistics.median(100 * (max(x) / min(x) - 1) for x in rounds)}
        for stat, fn in STATISTICS.items():
            err = [100 * (fn(x) / min(r) - 1) for x, r in zip(rounds, reads)]
            mid = [100 * (fn(x) / statistics.median(r) - 1) for x, r in zip(rounds, reads)]
            row[f"{stat} vs fastest (mean/max abs %)"] = f"{statistics.mean(err):+.1f} / {max(map(abs, err)):.1f}"
            row[f"{stat} vs median reading (mean %)"] = f"{statistics.mean(mid):+.1f}"
        rows.append(row)
    return pd.DataFrame(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="host", help="a device this machine measures (host, host-tvm)")
    ap.add_argument("--models", nargs="+", default=["resnet18", "mobilenet_v2", "mobilenet_v1"])
    ap.add_argument("--rounds", type=int, default=18, help="calibration rounds per model (default 18)")
    ap.add_argument("--blocks", type=int, default=3, help="fresh-process readings, one after each block (default 3)")
    args = ap.parse_args()
    profile = load_profile(args.device)
    if not profile.measurable_here:
        ap.error(f"'{args.device}' is not this machine")
    if args.rounds < args.blocks or args.blocks < 1:
        ap.error(f"--rounds {args.rounds} must be at least --blocks {args.blocks} (>= 1)")
    runtime = profile.local_runtime()
    started = time.perf_counter()
    rows = []
    for name in args.models:
        rows += measure(name, runtime, args.rounds, args.blocks, seconds=2.0 / 9)  # a build's round length
    df = pd.DataFrame(rows)
    OUT.mkdir(exist_ok=True)
    df.to_csv(OUT / "calibration_statistic.csv", index=False)
    text = "\n".join([
        f"# Calibration rounds against the standard stopwatch ({args.device})", "",
        f"{machine_line(runtime, profile.threads)} Per model: its 11 calibration models, "
        f"{args.rounds} in-process rounds of {2.0 / 9:.2f} s each (as a table build times them) in {args.blocks} "
        f"blocks, and after each block one `hwprune bench` reading per model in a fresh process (10 warm-up runs, "
        ">= 30 runs and >= 1 s). Errors: a statistic of a model's rounds against its fastest reading (the "
        "otherwise idle device, what the fidelity benchmarks compare) and its median reading, averaged over "
        "the 11 models.", "",
        md_table(summarize(df)), "",
        f"`*_spread_pct`: median over the models of max/min - 1. Wall time {time.perf_counter() - started:.0f} s."])
    (OUT / "calibration_statistic.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
