"""Hand-written TVM CPU schedules (hwprune.runtimes.tvm.schedule) vs onnxruntime.

For the demo CNN (dense), ResNet-18 at 224 (dense, a 50% and a 30% uniform pruning plan)
and MobileNetV2 at 224 (dense, 50% and 30%) this exports ONNX, compiles it with
:func:`hwprune.runtimes.tvm.build` (no tuning) and times it against
onnxruntime, both on one thread (onnxruntime: intra_op_num_threads=1, ORT_ENABLE_ALL).
The 30% plans keep channel counts that are multiples of 8 but not of 16, AVX-512's lane
count (ResNet-18: 88 and 360 of its stages' 48, 88, 176, 360), so the schedules' tails are
timed too.
The demo is also compiled with TVM's default pipeline (no schedules) for reference; the
others would take minutes per run unscheduled.

Timing is interleaved in rounds (alternating which runtime goes first); each round
times each runtime for a fixed wall-clock slice and keeps the median run; the table
reports the median over rounds and the ratio of those medians.

    PYTHONPATH=. python benchmarks/tvm_schedule_check.py [--rounds 5] [--models demo,...]

Writes benchmarks/results/tvm_schedule_check.md and .csv (AVX-512; ``-avx2`` for AVX2 CPUs). The machine is shared with
other jobs: read ratios, not absolute times.
"""
from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hwprune.runtimes import tvm as tvmc  # noqa: E402
from hwprune.models import load_model  # noqa: E402
from hwprune.onnx_export import to_onnx_bytes  # noqa: E402
from hwprune.pruning import PruningSpace  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
MODELS = {  # label: (zoo name, uniform pruning ratio or None)
    "demo": ("demo", None),
    "resnet18": ("resnet18", None),
    "resnet18-50%": ("resnet18", 0.5),
    "resnet18-30%": ("resnet18", 0.3),
    "mobilenet_v2": ("mobilenet_v2", None),
    "mobilenet_v2-50%": ("mobilenet_v2", 0.5),
    "mobilenet_v2-30%": ("mobilenet_v2", 0.3),
}


def _onnx(label: str) -> tuple[bytes, tuple[int, ...]]:
    name, ratio = MODELS[label]
    lm = load_model(name)
    model = lm.model
    if ratio is not None:
        space = PruningSpace(lm)
        model = space.apply(space.uniform_plan(ratio))
    return to_onnx_bytes(model, lm.input_shape), tuple(lm.input_shape)


def _slice_median(fn, slice_s: float) -> float:
    """Median seconds per call of ``fn`` over a ``slice_s`` wall-clock slice."""
    times = []
    end = time.perf_counter() + slice_s
    while True:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
        if t > end and len(times) >= 3:
            break
    return statistics.median(times)


def _interleaved(fns: dict, rounds: int, slice_s: float) -> dict[str, float]:
    """Median over rounds of each round's median (ms); order alternates per round."""
    per = {k: [] for k in fns}
    names = list(fns)
    for r in range(rounds):
        for k in (names if r % 2 == 0 else names[::-1]):
            per[k].append(_slice_median(fns[k], slice_s) * 1e3)
    return {k: statistics.median(v) for k, v in per.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--slice-s", type=float, default=0.4, help="seconds per runtime per round")
    args = ap.parse_args()

    import onnxruntime as ort
    tvm = tvmc.import_tvm()
    target = tvmc.resolve_target({"kind": "llvm", "mcpu": "native", "num-cores": 1})
    tvmc.set_num_threads(1)
    rows = []
    for label in args.models.split(","):
        onnx_bytes, shape = _onnx(label)
        x = np.random.default_rng(0).standard_normal(shape).astype("float32")
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sess = ort.InferenceSession(onnx_bytes, so, providers=["CPUExecutionProvider"])
        iname = sess.get_inputs()[0].name
        ref = sess.run(None, {iname: x})[0]

        t0 = time.perf_counter()
        exe = tvmc.build(tvmc.import_onnx(onnx_bytes), tvmc.resolve_target(target))
        compile_s = time.perf_counter() - t0
        report = tvmc.last_schedule_report()
        vm, dev = tvmc.load_vm(exe)
        args_t = [tvm.runtime.tensor(x, dev)]
        out = tvmc.run_vm(vm, dev, [x])[0]
        rel = float(np.abs(out - ref).max() / max(1e-12, float(np.abs(ref).max())))
        fns = {"tvm": lambda: vm["main"](*args_t), "ort": lambda: sess.run(None, {iname: x})}
        default_ms = None
        if label == "demo":
            t1 = time.perf_counter()
            exe_d = tvmc.build(tvmc.import_onnx(onnx_bytes), target, schedules=False)
            default_compile_s = time.perf_counter() - t1
            vm_d, _ = tvmc.load_vm(exe_d)
            fns["tvm_default"] = lambda: vm_d["main"](*args_t)
        for f in fns.values():  # warm up
            for _ in range(3):
                f()
        med = _interleaved(fns, args.rounds, args.slice_s)
        if "tvm_default" in med:
            default_ms = med["tvm_default"]
        funcs = [k for k in report if not k.startswith("_")]
        fallback = sorted(k for k in funcs if report[k] == "fallback")
        row = {"model": label, "input": "x".join(map(str, shape)), "compile_s": round(compile_s, 2),
               "tvm_ms": round(med["tvm"], 3), "onnxruntime_ms": round(med["ort"], 3),
               "ratio": round(med["tvm"] / med["ort"], 2),
               "tvm_default_ms": round(default_ms, 2) if default_ms is not None else None,
               "default_ratio": round(default_ms / med["ort"], 1) if default_ms is not None else None,
               "max_rel_diff": f"{rel:.1e}", "funcs": len(funcs),
               "fallback": " ".join(fallback) or "-"}
        if label == "demo":
            row["default_compile_s"] = round(default_compile_s, 2)
        rows.append(row)
        print(row, flush=True)
    _write(rows, target)
    return 0


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _write(rows: list[dict], target: dict) -> None:
    """Results per vector width: ``tvm_schedule_check.md`` for AVX-512 (16 lanes), a
    ``-avx2`` / ``-lanes4`` sibling for other CPUs, so machines do not overwrite each other."""
    import onnxruntime
    import tvm

    from hwprune.runtimes.tvm.schedule import vector_lanes
    lanes = vector_lanes(target)
    isa = {16: "AVX-512", 8: "AVX2"}.get(lanes, f"{lanes} fp32 lanes")
    stem = {16: "tvm_schedule_check", 8: "tvm_schedule_check-avx2"}.get(lanes, f"tvm_schedule_check-lanes{lanes}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    cols = ["model", "input", "compile_s", "tvm_ms", "onnxruntime_ms", "ratio", "tvm_default_ms",
            "default_ratio", "max_rel_diff", "funcs", "fallback"]
    with (RESULTS / f"{stem}.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    ratios = [r["ratio"] for r in rows]
    fmt = lambda v: "-" if v is None else str(v)  # noqa: E731
    text = ("# TVM hand-written CPU schedules vs onnxruntime (1 thread each)\n\n"
            "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n"
            + "".join("| " + " | ".join(fmt(r.get(c)) for c in cols) + " |\n" for r in rows)
            + f"\nMedian ratio (TVM / onnxruntime): {statistics.median(ratios):.2f}; "
            f"max {max(ratios):.2f}.\n\n"
            f"Machine: {_cpu_name()} ({isa}, target mcpu {target.get('mcpu', '?')}), {os.cpu_count()} CPUs "
            f"**shared with other jobs** (noisy: compare ratios). TVM {tvm.__version__}, "
            f"onnxruntime {onnxruntime.__version__}. compile_s = ONNX import + zero pipeline + "
            "schedule + tvm.compile (`hwprune.runtimes.tvm.build`), no tuning. tvm_default = `tvm.compile` "
            "without schedules (demo only). Timed interleaved in rounds, median of each round, "
            "median over rounds. fallback = fused functions no rule matched.\n")
    (RESULTS / f"{stem}.md").write_text(text)
    print("\n" + text)


if __name__ == "__main__":
    raise SystemExit(main())
