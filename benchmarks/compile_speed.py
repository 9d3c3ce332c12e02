"""Latency on this CPU: onnxruntime vs TVM default pipeline vs schedule library vs tuned.

For each model variant this exports ONNX and compiles it with TVM several ways:

* ``default``  -- ``build(..., schedules=False)``: TVM's own pipeline, no CPU schedules
  (only for the demo CNN and one ResNet-18 layer: whole ImageNet models take minutes);
* ``library``  -- hwprune's hand-written schedule library (what export uses untuned);
* ``tuned@N``  -- MetaSchedule with a budget of N trials on top of the library (per task the
  faster of record and library kept), with the tuning wall time beside it: the trial curve.
  One tuning database per base model and budget, shared by its dense and pruned variants.

All of them and onnxruntime are timed in interleaved rounds (every runtime once per round,
median over rounds), one thread each. Run it on a quiet machine:

    python benchmarks/compile_speed.py --tables DIR                       # everything (about an hour)
    python benchmarks/compile_speed.py --models demo --budgets 4 --rounds 3   # smoke test, ~2 min

Variants: ``demo``, ``demo@0.5``, ``resnet18``, ``resnet18@0.5``, ``mobilenet_v2`` (``@R`` = a
uniform plan pruning every group by R), ``resnet18-layer`` (the 3x3 conv-BN-ReLU of ResNet-18's
first stage, 64 channels at 56x56). With ``--tables DIR`` holding a host-tvm table of the
zoo models, each row also gets that table's prediction (``host_tvm_predicted_ms``, the drift
check applied as the CLI applies it) beside the measured library latency. Writes
benchmarks/results/compile_speed.csv and .md.
"""
from __future__ import annotations

import argparse
import csv
import logging
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hwprune._paths import tables_dir  # noqa: E402
from hwprune.runtimes import tvm as T  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
DEFAULT_MODELS = "demo,demo@0.5,resnet18-layer,resnet18,resnet18@0.5,mobilenet_v2"
WITH_DEFAULT_PIPELINE = ("demo", "resnet18-layer")


# --------------------------------------------------------------------------- models

def _layer_model() -> tuple[nn.Module, tuple[int, ...]]:
    layer = nn.Sequential(nn.Conv2d(64, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU())
    return layer.eval(), (1, 64, 56, 56)


def export_variant(variant: str, folder: Path) -> tuple[Path, dict[str, Any]]:
    """ONNX of ``variant`` in ``folder``; returns its path and size facts."""
    from hwprune.models import load_model
    from hwprune.onnx_export import export_onnx
    from hwprune.pruning import analyze

    torch.manual_seed(0)
    name, _, ratio = variant.partition("@")
    if name == "resnet18-layer":
        model, shape = _layer_model()
    else:
        lm = load_model(name)
        model, shape = lm.model.eval(), lm.input_shape
        if ratio:
            space = analyze(lm).space
            plan = space.uniform_plan(float(ratio))
            space.validate(plan)
            model = space.apply(plan).eval()
    path = export_onnx(model, shape, folder / f"{variant}.onnx")
    return path, {"input": "x".join(map(str, shape)), "params": sum(p.numel() for p in model.parameters())}


def predict_variant(variant: str, tables: Path) -> tuple[float | None, str]:
    """The host-tvm table's prediction for ``variant`` (ms, drift followed as the CLI does)
    and why there is none: a model the table does not hold is not profiled here."""
    from hwprune.latency import open_predictor
    from hwprune.models import load_model
    from hwprune.pruning import analyze
    from hwprune.errors import HwpruneError

    name, _, ratio = variant.partition("@")
    if name == "resnet18-layer":
        return None, "not a zoo model"
    analysis = analyze(load_model(name))
    try:
        pred = open_predictor(analysis, "host-tvm", tables, drift=True)
    except HwpruneError as exc:
        return None, str(exc).splitlines()[0]
    plan = analysis.space.uniform_plan(float(ratio)) if ratio else analysis.space.dense_plan()
    return pred.predict_ms(plan), ""


# --------------------------------------------------------------------------- compile

def compile_all(onnx_path: Path, variant: str, budgets: list[int], db_root: Path,
                row: dict[str, Any]) -> dict[str, Any]:
    """Executables by label (default, library, tuned@N); tuning facts go into ``row``."""
    mod = T.import_onnx(onnx_path)
    target = T.resolve_target(T.HOST_TARGET)
    exes: dict[str, Any] = {}
    base = variant.partition("@")[0]
    if base in WITH_DEFAULT_PIPELINE:
        t0 = time.perf_counter()
        exes["default"] = T.build(mod, target, schedules=False)
        row["default_compile_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    exes["library"] = T.build(mod, target)
    row["library_compile_s"] = time.perf_counter() - t0
    for n in budgets:
        db = db_root / f"{base}-{n}"           # shared by the dense and pruned variants
        report = T.tune(mod, T.resolve_target(T.HOST_TARGET, num_cores=1), db, n, log_dir=db_root / "logs")
        row[f"tune{n}_s"] = report.seconds
        row[f"tune{n}_tasks"] = f"{report.kept_tuned}/{report.tuned_tasks} kept, {report.reused_tasks} reused"
        exes[f"tuned@{n}"] = T.build(mod, target, database_dir=db)
    return exes


# --------------------------------------------------------------------------- timing

def _tvm_timer(exe: Any, x: np.ndarray, repeats: int) -> Callable[[], float]:
    vm, dev = T.load_vm(exe)
    return lambda: statistics.median(T.time_vm(vm, dev, [x], warmup=2, repeats=repeats, min_time_s=0.02))


def _ort_timer(onnx_path: Path, x: np.ndarray, repeats: int) -> Callable[[], float]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name

    def once() -> float:
        for _ in range(2):
            sess.run(None, {name: x})
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            sess.run(None, {name: x})
            times.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(times)

    return once


def time_interleaved(onnx_path: Path, exes: dict[str, Any], rounds: int, repeats: int) -> dict[str, float]:
    """Median over ``rounds`` of each runtime's median latency (ms); one runtime after the
    other within a round, so load from other jobs hits them alike."""
    T.set_num_threads(1)
    shape = T.onnx_inputs(onnx_path)[0].shape
    x = np.random.default_rng(0).standard_normal(shape).astype("float32")
    timers = {"onnxruntime": _ort_timer(onnx_path, x, repeats)}
    timers.update({label: _tvm_timer(exe, x, repeats) for label, exe in exes.items()})
    samples: dict[str, list[float]] = {k: [] for k in timers}
    for _ in range(rounds):
        for label, timer in timers.items():
            samples[label].append(timer())
    return {label: statistics.median(v) for label, v in samples.items()}


# --------------------------------------------------------------------------- report

def _fmt(v: object) -> str:
    if v is None or v == "":
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


def write_results(rows: list[dict[str, Any]], budgets: list[int], total_s: float, out_dir: Path) -> str:
    import onnxruntime

    cols = list(dict.fromkeys(k for r in rows for k in r))
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / "compile_speed.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
    head = "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n"
    body = "".join("| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |\n" for r in rows)
    note = (f"\nLatencies in ms (1 thread, median over interleaved rounds); `*_s` columns are seconds "
            f"of compile or tuning wall time. Budgets: {', '.join(map(str, budgets)) or 'none'} trials in total "
            "per model (tasks ranked by latency share, >= 16 trials per tuned task; per task the faster of "
            "record and library kept: `kept` = records faster than the library). `host_tvm_predicted_ms`: the "
            "host-tvm table's prediction for the variant (`-`: the table lacks the model). Machine: "
            f"{platform.machine()}, {os.cpu_count()} CPUs, TVM {T.tvm_version()}, onnxruntime "
            f"{onnxruntime.__version__}. Total benchmark time {total_s / 60:.1f} min.\n")
    text = "# Compile speed: onnxruntime vs TVM default vs schedule library vs tuned (host CPU)\n\n"
    text += head + body + note
    (out_dir / "compile_speed.md").write_text(text)
    return text


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=DEFAULT_MODELS, help=f"comma-separated variants (default {DEFAULT_MODELS})")
    ap.add_argument("--budgets", default="16,64", help="tuning budgets in trials, comma-separated ('' for none)")
    ap.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds")
    ap.add_argument("--repeats", type=int, default=20, help="runs per runtime per round")
    ap.add_argument("--out", type=Path, default=RESULTS, help="folder for compile_speed.csv/.md")
    ap.add_argument("--tables", type=Path, default=None,
                    help="folder with a host-tvm table of the models (profile it first: hwprune profile "
                         "--device host-tvm --model M); its prediction goes beside the measurements")
    args = ap.parse_args()
    budgets = [int(b) for b in args.budgets.split(",") if b.strip()]
    if any(b <= 0 for b in budgets):
        ap.error(f"budgets must be positive, got {args.budgets!r}")
    logging.getLogger("tvm").setLevel(logging.WARNING)   # MetaSchedule logs every task
    torch.set_num_threads(1)

    t_start = time.perf_counter()
    rows = []
    work = Path(tempfile.mkdtemp(prefix="hwprune-bench-"))
    try:
        for variant in [m.strip() for m in args.models.split(",") if m.strip()]:
            onnx_path, facts = export_variant(variant, work)
            row: dict[str, Any] = {"model": variant, **facts}
            exes = compile_all(onnx_path, variant, budgets, work / "db", row)
            times = time_interleaved(onnx_path, exes, args.rounds, args.repeats)
            row.update({f"{label}_ms": ms for label, ms in times.items()})
            row["library_vs_ort"] = times["library"] / times["onnxruntime"]
            predicted, why = predict_variant(variant, tables_dir(args.tables))
            row["host_tvm_predicted_ms"] = predicted
            row["predicted_vs_library"] = predicted / times["library"] if predicted else None
            if why:
                print(f"{variant}: no host-tvm prediction ({why})", file=sys.stderr)
            for n in budgets:
                row[f"tuned{n}_vs_library"] = times[f"tuned@{n}"] / times["library"]
            rows.append(row)
            print({k: _fmt(v) for k, v in row.items()}, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\n" + write_results(rows, budgets, time.perf_counter() - t_start, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
