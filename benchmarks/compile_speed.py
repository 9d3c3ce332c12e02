"""Compile speed and latency: onnxruntime vs TVM untuned vs TVM MetaSchedule-tuned.

For the demo CNN (1x1x28x28) and ResNet-18 (1x3x224x224), dense and one pruned variant
(half of the channels inside every residual block, kept by L1 norm), this exports ONNX,
runs :func:`hwprune.compile.export_artifact` for the host profile untuned and tuned
(one MetaSchedule database per model, shared by its dense and pruned variant), and
reports latency (1 thread, median) and compile/tune time.

    python benchmarks/compile_speed.py                       # ~10-15 min on 2 shared cores
    python benchmarks/compile_speed.py --resnet-trials 32    # quiet machine: adds tuned ResNet-18

MetaSchedule builds one candidate at a time here; on the shared 2-core machine one build
took 60-120 s (load average 5), so the default tunes only the demo model (8 trials).

Writes benchmarks/results/compile_speed.csv and .md. Timings come from a shared
machine: read ratios, not absolute numbers.
"""
from __future__ import annotations

import argparse
import copy
import csv
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hwprune.compile import export_artifact  # noqa: E402
from hwprune.models import load_model  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def _keep_idx(weight: torch.Tensor, keep: int) -> torch.Tensor:
    scores = weight.detach().abs().flatten(1).sum(1)
    return torch.sort(torch.topk(scores, keep).indices).values


def _narrow_conv(conv: nn.Conv2d, out_idx: torch.Tensor | None, in_idx: torch.Tensor | None) -> nn.Conv2d:
    w = conv.weight.detach()
    if out_idx is not None:
        w = w[out_idx]
    if in_idx is not None:
        w = w[:, in_idx]
    new = nn.Conv2d(w.shape[1], w.shape[0], conv.kernel_size, conv.stride, conv.padding,
                    bias=conv.bias is not None)
    new.weight.data.copy_(w)
    if conv.bias is not None:
        new.bias.data.copy_(conv.bias.detach()[out_idx] if out_idx is not None else conv.bias.detach())
    return new


def _narrow_bn(bn: nn.BatchNorm2d, idx: torch.Tensor) -> nn.BatchNorm2d:
    new = nn.BatchNorm2d(len(idx))
    for name in ("weight", "bias"):
        getattr(new, name).data.copy_(getattr(bn, name).detach()[idx])
    new.running_mean.copy_(bn.running_mean[idx])
    new.running_var.copy_(bn.running_var[idx])
    return new


def prune_inner(model: nn.Module, ratio: float = 0.5) -> nn.Module:
    """Keep ``ratio`` of the channels between the two convs of each residual block.

    Those channels are coupled to nothing else, so this is a valid channel-pruning plan
    for both the demo CNN (ResBlock) and ResNet BasicBlocks, without hwprune.pruning.
    """
    model = copy.deepcopy(model).eval()
    for m in model.modules():
        if hasattr(m, "conv1") and hasattr(m, "conv2"):
            if isinstance(m.conv1, nn.Sequential):          # demo ResBlock: conv1 = conv-bn-relu
                c1, b1 = m.conv1[0], m.conv1[1]
            else:                                           # ResNet BasicBlock
                c1, b1 = m.conv1, m.bn1
            idx = _keep_idx(c1.weight, max(1, int(c1.out_channels * ratio)))
            new_c1, new_b1 = _narrow_conv(c1, idx, None), _narrow_bn(b1, idx)
            if isinstance(m.conv1, nn.Sequential):
                m.conv1[0], m.conv1[1] = new_c1, new_b1
            else:
                m.conv1, m.bn1 = new_c1, new_b1
            m.conv2 = _narrow_conv(m.conv2, None, idx)
    return model


def write_run(run: Path, model: nn.Module, shape: tuple[int, ...]) -> None:
    run.mkdir(parents=True)
    torch.onnx.export(model, (torch.randn(*shape),), str(run / "model.onnx"), dynamo=False,
                      opset_version=17, input_names=["input"], output_names=["output"])
    (run / "plan.json").write_text(json.dumps({"note": "benchmark variant"}))
    (run / "summary.json").write_text(json.dumps({
        "status": "finished", "device": "host", "predicted_latency_ms": None, "accuracy": {}}))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="demo,resnet18")
    ap.add_argument("--demo-trials", type=int, default=8)
    ap.add_argument("--resnet-trials", type=int, default=0)
    ap.add_argument("--budget-s", type=float, default=840.0, help="skip tuning once this is spent")
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()

    t_start = time.perf_counter()
    rows = []
    work = Path(tempfile.mkdtemp(prefix="hwprune-bench-"))
    try:
        for name in args.models.split(","):
            lm = load_model(name)
            trials = args.demo_trials if name == "demo" else args.resnet_trials
            db = work / f"db-{name}"
            for variant, model in (("dense", lm.model), ("pruned-50%-inner", prune_inner(lm.model))):
                params = sum(p.numel() for p in model.parameters())
                run = work / f"{name}-{variant}"
                write_run(run, model, lm.input_shape)
                untuned = export_artifact(run, "host", work / f"{name}-{variant}-untuned",
                                          warmup=3, repeats=args.repeats)
                row = {"model": name, "variant": variant, "params": params,
                       "onnxruntime_ms": untuned["measured"]["onnxruntime_median_ms"],
                       "tvm_untuned_ms": untuned["measured"]["tvm_median_ms"],
                       "untuned_compile_s": untuned["compile_s"],
                       "untuned_max_rel_diff": untuned["verification"]["max_abs_diff_over_scale"]}
                spent = time.perf_counter() - t_start
                if trials > 0 and spent < args.budget_s:
                    tuned = export_artifact(run, "host", work / f"{name}-{variant}-tuned",
                                            tune_trials=trials, database_dir=db, warmup=3,
                                            repeats=args.repeats)
                    tn = tuned["tuning"]
                    row.update(tvm_tuned_ms=tuned["measured"]["tvm_median_ms"],
                               tune_s=tn["seconds"], tuned_compile_s=tuned["compile_s"],
                               trials=trials, tasks_tuned=tn["tuned_tasks"], tasks_reused=tn["reused_tasks"],
                               tuned_max_rel_diff=tuned["verification"]["max_abs_diff_over_scale"])
                else:
                    row.update(tvm_tuned_ms=None, tune_s=None, tuned_compile_s=None, trials=0,
                               tasks_tuned=None, tasks_reused=None, tuned_max_rel_diff=None)
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    total_s = time.perf_counter() - t_start
    _write(rows, total_s)
    return 0


def _fmt(v: object) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1e-2 else f"{v:.2f}"
    return str(v)


def _write(rows: list[dict], total_s: float) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    cols = list(rows[0]) if rows else []
    with (RESULTS / "compile_speed.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
    import onnxruntime
    import tvm  # benchmark script, not the package: the lazy-import rule is for hwprune/
    head = ("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n")
    body = "".join("| " + " | ".join(_fmt(r[c]) for c in cols) + " |\n" for r in rows)
    note = (f"\nMachine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPUs "
            f"**shared with other jobs** (numbers are noisy; compare ratios). TVM {tvm.__version__}, "
            f"onnxruntime {onnxruntime.__version__}, 1 thread each, median of the repeats. "
            "Tuned = MetaSchedule with the stated total trials over conv/matmul tasks (tiny budget: far from "
            "converged), one database per model shared by dense and pruned variants "
            f"(tasks_reused). Total benchmark time {total_s / 60:.1f} min.\n")
    text = "# Compile speed: onnxruntime vs TVM untuned vs TVM tuned (host CPU)\n\n" + head + body + note
    (RESULTS / "compile_speed.md").write_text(text)
    print("\n" + text)


if __name__ == "__main__":
    raise SystemExit(main())
