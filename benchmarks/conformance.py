"""Conformance of architectures as people write them (tests/conformance/models.py).

For each model: its pruning groups, the kernel ops onnxruntime runs, parameters dense and
at half the channels (uniform ratio 0.5; analytic count checked against the pruned
module), the largest relative difference between onnxruntime and torch over ratios
0.25/0.5/0.75, and - unless ``--no-latency`` - the host latency of the 0.5 plan predicted
from a table profiled here and now (in a temporary folder) vs measured end to end
(``hwprune latency --measure``), and the pixel1 analytic estimate. Run on a quiet machine.

    python benchmarks/conformance.py                       # every model
    python benchmarks/conformance.py --models vgg_mlp,unet --no-latency

Writes benchmarks/results/conformance.csv and .md.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hwprune.cli import main as cli  # noqa: E402
from hwprune.devices import LocalRunner  # noqa: E402
from hwprune.latency import LatencyTable, open_predictor  # noqa: E402
from hwprune.latency._profiler import profile_model  # noqa: E402
from hwprune.models import load_model  # noqa: E402
from hwprune.onnx_export import check_onnx, to_onnx_bytes  # noqa: E402
from hwprune.pruning import analyze  # noqa: E402
from hwprune.runtimes.ort import cpu_model, extract_kernels  # noqa: E402
from hwprune.runtimes.timing import TimingProtocol  # noqa: E402
from tests.conformance.models import SHAPES  # noqa: E402

MODELS_FILE = ROOT / "tests" / "conformance" / "models.py"
RATIOS = (0.25, 0.5, 0.75)
OUT = ROOT / "benchmarks" / "results"


def _latency(name: str, analysis, plan, work: Path) -> dict:
    tables = work / "tables"
    t0 = time.perf_counter()
    profile_model(analysis, LatencyTable.load(tables, "host", create=True),
                  LocalRunner(protocol=TimingProtocol(warmup=2, repeats=5, min_time_s=0.0)), anchors=3,
                  progress=False)
    profile_s = time.perf_counter() - t0
    predicted = open_predictor(analysis, "host", tables).predict_ms(plan)
    plan.save(work / "plan.json")
    shape = SHAPES[name]
    argv = ["latency", "--device", "host", "--model", f"{MODELS_FILE}:{name}", "--tables", str(tables),
            "--plan", str(work / "plan.json"), "--measure", "--format", "json"]
    argv += ["--input-shape", "x".join(map(str, shape))] if shape else []
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = cli(argv)
    if code != 0:
        raise RuntimeError(f"hwprune latency failed for {name}: {buf.getvalue()[-500:]}")
    measured = json.loads(buf.getvalue())["measured_ms"]
    phone = open_predictor(analysis, "pixel1", work / "phone").predict_ms(plan)
    return {"profile_s": round(profile_s, 1), "predicted_ms": predicted, "measured_ms": measured,
            "error": (predicted - measured) / measured, "pixel1_estimate_ms": phone}


def run_model(name: str, latency: bool) -> dict:
    lm = load_model(f"{MODELS_FILE}:{name}", input_shape=SHAPES[name])
    a = analyze(lm)
    space, cost = a.space, a.cost
    plan = space.uniform_plan(0.5)
    ops = sorted({t.base.op for t in a.templates})
    diffs, counted = [], True
    for r in RATIOS:
        p = space.uniform_plan(r)
        pruned = space.apply(p)
        diffs.append(check_onnx(pruned, to_onnx_bytes(pruned, lm.input_shape), lm.input_shape))
        counted &= cost.cost(p).params == sum(x.numel() for x in pruned.parameters())
    row = {"model": name, "groups": len(space.groups), "kept_whole": len(space.auto_pinned),
           "kernels": len(a.templates), "ops": " ".join(ops),
           "params_dense": cost.cost(space.dense_plan()).params, "params_0.5": cost.cost(plan).params,
           "params_match": counted, "max_rel_diff": max(diffs)}
    assert len(extract_kernels(cost.onnx_models[0])) == len(a.templates)
    if latency:
        with tempfile.TemporaryDirectory(prefix="hwprune-conformance-") as tmp:
            row.update(_latency(name, a, plan, Path(tmp)))
    return row


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def _table(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    rows = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, r in df.iterrows():
        rows.append("| " + " | ".join(f"{r[c]:+.1%}" if c == "error" else _cell(r[c]) for c in cols) + " |")
    return "\n".join(rows)


def _markdown(df: pd.DataFrame, latency: bool) -> str:
    lines = ["# Conformance: architectures as people write them", "",
             f"Machine: {cpu_model()}; models in `tests/conformance/models.py` (small inputs); "
             "plan: every group keeps half its channels (uniform ratio 0.5).", "",
             "- **groups**: pruning groups; **kept whole**: groups Torch-Pruning cannot follow "
             "(channel shuffle, GhostNet's residual over a concatenation), pinned automatically",
             "- **params match**: the analytic count equals the pruned module's at ratios 0.25/0.5/0.75",
             "- **max rel diff**: onnxruntime vs torch, largest over the three ratios"]
    if latency:
        lines += ["- **predicted/measured**: host, single thread; table profiled here with 3 anchors "
                  "per group; measured by `hwprune latency --measure`",
                  "- **pixel1**: analytic estimate (roofline-v1), milliseconds"]
    lines += ["", _table(df), ""]
    if latency:
        err = df["error"].abs()
        lines += [f"Prediction error: median {err.median():.1%}, max {err.max():.1%} "
                  f"({(err <= 0.15).sum()}/{len(df)} within 15%).", ""]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(n for n in SHAPES if n != "channel_mean_gate"))
    ap.add_argument("--no-latency", action="store_true", help="skip profiling and timing")
    args = ap.parse_args()
    rows = []
    for name in args.models.split(","):
        t0 = time.perf_counter()
        row = run_model(name, not args.no_latency)
        rows.append(row)
        print(f"{name}: {json.dumps(row, default=str)} ({time.perf_counter() - t0:.0f} s)", flush=True)
    df = pd.DataFrame(rows)
    OUT.mkdir(parents=True, exist_ok=True)
    df.to_csv(OUT / "conformance.csv", index=False)
    text = _markdown(df, not args.no_latency)
    (OUT / "conformance.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
