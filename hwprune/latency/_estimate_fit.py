"""Fit the roofline-v1 factors on real per-layer timings.

The data set shipped for this is ``device_profiles/data/pixel1-tflite-mobilenetv1``:
TFLite ``benchmark_model`` per-node times of MobileNetV1 (width 1.0 and 0.75) on a
Pixel 1 CPU, fp32, 1 thread (see its README for source and licence). The kernel
signatures are built here from the published channel configuration, not read from the
.tflite file (which is not shipped).

Fit: minimise the mean squared log error ``mean((log est - log measured)^2)`` over the
29 modelled kernels of each width (stem, 13 depthwise + 13 pointwise, GAP, classifier)
by coordinate descent on the log factors, with a very weak pull (``prior_weight``)
toward the prior factors so that a factor the data never exercises (e.g. the compute
efficiency of the memory-bound classifier) keeps its documented prior instead of
drifting. Log error weights every layer equally whatever its size; the end-to-end sum
is checked separately. SQUEEZE and SOFTMAX nodes (0.03 % of the time) are not kernels
hwprune models and are left out of both sides of the comparison.

>>> from hwprune.devices import load_profile
>>> samples = load_samples("1.0") + load_samples("0.75")
>>> fit = fit_factors(samples, load_profile("pixel1"), PHONE_CPU_PRIOR)
>>> round(fit.factors.compute_efficiency["conv_pw"], 2)
0.3
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from hwprune._paths import profiles_dir
from hwprune.latency._estimate import (COMPUTE_CLASSES, OP_CLASSES, Factors, _peaks,
                                       estimate_ms, op_class)
from hwprune.devices import DeviceProfile
from hwprune.latency._tflite_log import NodeTiming, average_runs, parse_benchmark_log
from hwprune.errors import DataError
from hwprune.runtimes.kernels import KernelSig

__all__ = ["DATASET", "WIDTHS", "PHONE_CPU_PRIOR", "Sample", "FitResult", "dataset_dir",
           "mobilenet_v1_sigs", "load_nodes", "load_samples", "unmodelled_nodes", "fit_factors",
           "evaluate"]

DATASET = "pixel1-tflite-mobilenetv1"
WIDTHS = ("1.0", "0.75")
# (pointwise output channels, stride of the depthwise conv), width 1.0
_MBV1_BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1),
                (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1)]

#: Starting point of the phone-CPU fit and the value kept by factors the data does not
#: exercise: rough fp32 single-thread NEON figures (GEMM-like kernels reach a third to
#: a half of peak, depthwise a tenth, data movement a third of DRAM bandwidth).
PHONE_CPU_PRIOR = Factors(
    compute_efficiency={"conv_dense": 0.3, "conv_pw": 0.4, "conv_dw": 0.1, "gemm": 0.4},
    bandwidth_efficiency={c: 0.3 for c in OP_CLASSES},
    overhead_ms=0.01,
)


@dataclass(frozen=True)
class Sample:
    """One measured kernel: layer name, signature, mean and spread over runs (ms)."""

    width: str
    layer: str
    sig: KernelSig
    measured_ms: float
    std_ms: float


@dataclass
class FitResult:
    factors: Factors
    loss: float
    rms_log_error: float
    #: how many calibration kernels each factor decided (0: the factor kept its prior)
    determined_by: dict[str, int] = field(default_factory=dict)


def dataset_dir() -> Path:
    return profiles_dir() / "data" / DATASET


def _same(k: int, stride: int) -> tuple[int, int, int, int]:
    """TensorFlow SAME padding for even inputs (extra row/col at bottom/right)."""
    total = max(k - stride, 0)
    lo = total // 2
    return (lo, lo, total - lo, total - lo)


def mobilenet_v1_sigs(width: str | float, resolution: int = 224,
                      num_classes: int = 1000) -> list[tuple[str, KernelSig]]:
    """(TFLite layer name, KernelSig) for MobileNetV1 as the TFLite graph runs it.

    BN is folded and ReLU6 fused into every conv; the classifier is a 1x1 conv on a
    1x1 map, which is a ``gemm`` for our purposes.
    """
    mult = float(width)
    stem = int(32 * mult)
    out: list[tuple[str, KernelSig]] = []
    h = resolution
    out.append(("Conv2d_0", KernelSig("conv", 3, stem, k=(3, 3), stride=(2, 2), pads=_same(3, 2),
                                      h=h, w=h, act="relu6")))
    h //= 2
    cin = stem
    for i, (c, s) in enumerate(_MBV1_BLOCKS, start=1):
        cout = int(c * mult)
        out.append((f"Conv2d_{i}_depthwise",
                    KernelSig("conv", cin, cin, k=(3, 3), stride=(s, s), pads=_same(3, s),
                              groups=cin, h=h, w=h, act="relu6")))
        h //= s
        out.append((f"Conv2d_{i}_pointwise", KernelSig("conv", cin, cout, h=h, w=h, act="relu6")))
        cin = cout
    out.append(("AvgPool_1a", KernelSig("gap", cin, cin, k=(h, h), h=h, w=h)))
    out.append(("Conv2d_1c_1x1", KernelSig("gemm", cin, num_classes)))
    return out


def load_nodes(width: str, folder: Path | None = None) -> list[NodeTiming]:
    """Per-node timings of one width, averaged over its run logs."""
    folder = folder or dataset_dir()
    paths = sorted(folder.glob(f"mobilenet_{width}_run*.txt"))
    if not paths:
        raise DataError(f"no benchmark logs for width {width} in '{folder}'",
                        f"expected files mobilenet_{width}_run1.txt ...")
    return average_runs([parse_benchmark_log(p) for p in paths])


def _layer_of(node: NodeTiming) -> str:
    parts = node.name.split("/")
    return parts[-2] if len(parts) >= 2 else node.name


def load_samples(width: str, folder: Path | None = None) -> list[Sample]:
    """The modelled kernels of one width joined with their measured times."""
    nodes = {_layer_of(n): n for n in load_nodes(width, folder)}
    sigs = mobilenet_v1_sigs(width)
    missing = [name for name, _ in sigs if name not in nodes]
    if missing:
        raise DataError(f"width {width}: layers missing from the logs: {', '.join(missing)}")
    return [Sample(width, name, sig, nodes[name].avg_ms, nodes[name].std_ms) for name, sig in sigs]


def unmodelled_nodes(width: str, folder: Path | None = None) -> list[NodeTiming]:
    """Nodes in the logs that hwprune does not model (SQUEEZE, SOFTMAX)."""
    names = {name for name, _ in mobilenet_v1_sigs(width)}
    return [n for n in load_nodes(width, folder) if _layer_of(n) not in names]


# ---------------------------------------------------------------- fitting
_PARAMS = [("compute_efficiency", c) for c in COMPUTE_CLASSES] + \
          [("bandwidth_efficiency", c) for c in OP_CLASSES] + [("overhead_ms", "")]
_LOG_BOUNDS = {"compute_efficiency": (math.log(1e-4), 0.0),
               "bandwidth_efficiency": (math.log(1e-4), 0.0),
               "overhead_ms": (math.log(1e-6), math.log(5.0))}


def _to_vec(f: Factors) -> np.ndarray:
    vals = []
    for group, cls in _PARAMS:
        v = f.overhead_ms if group == "overhead_ms" else getattr(f, group)[cls]
        vals.append(math.log(max(v, 1e-6)))
    return np.array(vals)


def _from_vec(v: np.ndarray) -> Factors:
    ce, be, oh = {}, {}, 0.0
    for (group, cls), x in zip(_PARAMS, v):
        if group == "compute_efficiency":
            ce[cls] = float(math.exp(x))
        elif group == "bandwidth_efficiency":
            be[cls] = float(math.exp(x))
        else:
            oh = float(math.exp(x))
    return Factors(ce, be, oh)


class _Problem:
    """Vectorised model over the calibration kernels for fast factor search."""

    def __init__(self, samples: Sequence[Sample], profile: DeviceProfile) -> None:
        peak, bw = _peaks(profile, "float32")
        self.c0 = np.array([2.0 * s.sig.macs / (peak * 1e6) for s in samples])
        self.m0 = np.array([s.sig.bytes_moved(4) / (bw * 1e6) for s in samples])
        classes = [op_class(s.sig) for s in samples]
        self.ci = np.array([COMPUTE_CLASSES.index(c) if c in COMPUTE_CLASSES else -1 for c in classes])
        self.bi = np.array([OP_CLASSES.index(c) for c in classes])
        self.logy = np.log([s.measured_ms for s in samples])

    def predict(self, v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        nc = len(COMPUTE_CLASSES)
        eff = np.exp(v[:nc])
        bwe = np.exp(v[nc:nc + len(OP_CLASSES)])
        oh = math.exp(v[-1])
        comp = np.where(self.ci >= 0, self.c0 / eff[np.maximum(self.ci, 0)], 0.0)
        mem = self.m0 / bwe[self.bi]
        return np.maximum(comp, mem) + oh, comp, mem

    def data_loss(self, v: np.ndarray) -> float:
        est, _, _ = self.predict(v)
        return float(np.mean((np.log(est) - self.logy) ** 2))


def fit_factors(samples: Sequence[Sample], profile: DeviceProfile, prior: Factors,
                prior_weight: float = 1e-4) -> FitResult:
    """Least squares on log latency, coordinate descent with shrinking steps.

    Deterministic; a few hundred milliseconds on 58 kernels.
    """
    if not samples:
        raise DataError("no samples to fit")
    prob = _Problem(samples, profile)
    v0 = _to_vec(prior)

    def loss(v: np.ndarray) -> float:
        return prob.data_loss(v) + prior_weight * float(np.sum((v - v0) ** 2))

    v = v0.copy()
    best = loss(v)
    offsets = np.linspace(-1.0, 1.0, 41)
    for step in (4.0, 1.0, 0.25, 0.06, 0.015, 0.004):
        for _ in range(50):
            improved = False
            for j, (group, _) in enumerate(_PARAMS):
                lo, hi = _LOG_BOUNDS[group]
                for x in np.clip(v[j] + step * offsets, lo, hi):
                    trial = v.copy()
                    trial[j] = x
                    val = loss(trial)
                    if val < best - 1e-12:
                        best, v, improved = val, trial, True
            if not improved:
                break
    est, comp, mem = prob.predict(v)
    determined: dict[str, int] = {}
    for j, (group, cls) in enumerate(_PARAMS):
        key = f"{group}.{cls}" if cls else group
        if group == "compute_efficiency":
            determined[key] = int(np.sum((prob.ci == j) & (comp >= mem)))
        elif group == "bandwidth_efficiency":
            determined[key] = int(np.sum((prob.bi == j - len(COMPUTE_CLASSES)) & (mem > comp)))
        else:
            determined[key] = len(samples)
    return FitResult(factors=_from_vec(v), loss=best,
                     rms_log_error=math.sqrt(prob.data_loss(v)), determined_by=determined)


def evaluate(samples: Sequence[Sample], profile: DeviceProfile, factors: Factors) -> dict[str, Any]:
    """Per-layer and end-to-end errors of ``factors`` on ``samples`` (one width)."""
    rows = []
    for s in samples:
        est = estimate_ms(s.sig, profile, factors)
        rows.append({"width": s.width, "layer": s.layer, "class": op_class(s.sig),
                     "measured_ms": s.measured_ms, "std_ms": s.std_ms, "estimated_ms": est,
                     "error_pct": 100.0 * (est - s.measured_ms) / s.measured_ms})
    measured = sum(r["measured_ms"] for r in rows)
    estimated = sum(r["estimated_ms"] for r in rows)
    abs_err = [abs(r["error_pct"]) for r in rows]
    return {"rows": rows, "measured_ms": measured, "estimated_ms": estimated,
            "end_to_end_error_pct": 100.0 * (estimated - measured) / measured,
            "median_abs_error_pct": statistics.median(abs_err),
            "max_abs_error_pct": max(abs_err)}
