"""Analytic (roofline) latency estimates for devices that cannot be measured from here.

Model ``roofline-v1``, per kernel and in milliseconds::

    compute_ms  = 2 * MACs / (peak_gflops[dtype] * 1e9 * compute_efficiency[class]) * 1e3
    memory_ms   = bytes_moved / (memory_bandwidth_gbs * 1e9 * bandwidth_efficiency[class]) * 1e3
    estimate_ms = max(compute_ms, memory_ms) + overhead_ms

``class`` is the kernel's op class (:func:`op_class`): ``conv_dense`` (k > 1, not
depthwise), ``conv_pw`` (1x1, not depthwise), ``conv_dw`` (groups == cin == cout > 1),
``gemm`` and ``elementwise`` (pooling, adds, activations, reshapes: no MACs, so always
memory-bound). ``bytes_moved`` touches each tensor once (:meth:`KernelSig.bytes_moved`).
The efficiencies are fractions of the datasheet peaks in the device profile; they and
``overhead_ms`` come from ``device_profiles/calibration/<name>.json``:

* ``phone-cpu`` - fitted on real TFLite per-layer timings of MobileNetV1 (width 1.0 and
  0.75) on a Pixel 1 (``device_profiles/data/pixel1-tflite-mobilenetv1``). Other phones
  (pixel7) reuse the same efficiencies scaled by their own peaks; that is an assumption
  (efficiencies independent of microarchitecture and runtime), not a measurement.
* ``edge-gpu`` / ``server-gpu`` - **uncalibrated** defaults (no GPU data is available
  here) with a per-kernel launch overhead. Use them to rank, not to promise.

The model is monotone in channels (more channels never give a faster estimate) and
ignores cache effects, tiling remainders and weight packing; the calibration report
(``benchmarks/results/estimator_pixel1.md``) gives its measured per-layer error.

>>> est = AnalyticEstimator("pixel1")
>>> est.method
'estimated:roofline-v1 calibrated on pixel1-tflite-mobilenetv1'
>>> round(est.estimate_ms(KernelSig("conv", 512, 512, h=14, w=14)), 1)  # doctest: +SKIP
9.4
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from hwprune._paths import profiles_dir
from hwprune.devices import DeviceProfile, load_profile
from hwprune.errors import DeviceError
from hwprune.runtimes.kernels import KernelSig

__all__ = ["OP_CLASSES", "MODEL_VERSION", "Factors", "op_class", "estimate_ms",
           "breakdown", "load_calibration", "AnalyticEstimator"]

MODEL_VERSION = "roofline-v1"
OP_CLASSES = ("conv_dense", "conv_pw", "conv_dw", "gemm", "elementwise")
#: Classes that do MACs and so have a compute efficiency.
COMPUTE_CLASSES = ("conv_dense", "conv_pw", "conv_dw", "gemm")
_ELEM_BYTES = {"float32": 4, "tf32": 4, "float16": 2, "bfloat16": 2, "int8": 1, "uint8": 1}
#: Calibration file per device class.
_CALIBRATION_FILES = {"phone-cpu": "phone-cpu", "edge-gpu": "gpu", "server-gpu": "gpu"}


def op_class(sig: KernelSig) -> str:
    """The efficiency class of a kernel (one of :data:`OP_CLASSES`).

    Grouped convolutions that are not depthwise use the dense or pointwise class by
    kernel size; a 1-channel conv is dense, not depthwise (there is nothing to vectorise
    across channels either way, and this keeps estimates monotone in channels).
    """
    if sig.op == "conv":
        if sig.groups > 1 and sig.groups == sig.cin == sig.cout:
            return "conv_dw"
        return "conv_pw" if tuple(sig.k) == (1, 1) else "conv_dense"
    if sig.op == "gemm":
        return "gemm"
    return "elementwise"


@dataclass(frozen=True)
class Factors:
    """Efficiencies (fractions of peak, in (0, 1]) and the per-kernel overhead in ms."""

    compute_efficiency: Mapping[str, float]
    bandwidth_efficiency: Mapping[str, float]
    overhead_ms: float

    def __post_init__(self) -> None:
        missing = [c for c in COMPUTE_CLASSES if c not in self.compute_efficiency]
        missing += [f"bandwidth:{c}" for c in OP_CLASSES if c not in self.bandwidth_efficiency]
        if missing:
            raise DeviceError(f"latency-model factors miss classes: {', '.join(missing)}",
                              f"give every class in {', '.join(OP_CLASSES)}")
        for name, table in (("compute_efficiency", self.compute_efficiency),
                            ("bandwidth_efficiency", self.bandwidth_efficiency)):
            for cls, value in table.items():
                if not (isinstance(value, (int, float)) and 0 < value <= 1):
                    raise DeviceError(f"{name}.{cls} must be in (0, 1], got {value!r}")
        if not (isinstance(self.overhead_ms, (int, float)) and self.overhead_ms >= 0):
            raise DeviceError(f"overhead_ms must be >= 0, got {self.overhead_ms!r}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Factors":
        try:
            return cls(compute_efficiency=dict(d["compute_efficiency"]),
                       bandwidth_efficiency=dict(d["bandwidth_efficiency"]),
                       overhead_ms=float(d["overhead_ms"]))
        except (KeyError, TypeError) as exc:
            raise DeviceError(f"latency-model factors need compute_efficiency, "
                              f"bandwidth_efficiency and overhead_ms; got {sorted(d)}") from exc

    def to_dict(self, digits: int = 5) -> dict[str, Any]:
        def r(x: float) -> float:
            return float(f"{x:.{digits}g}")
        return {"compute_efficiency": {c: r(self.compute_efficiency[c]) for c in COMPUTE_CLASSES},
                "bandwidth_efficiency": {c: r(self.bandwidth_efficiency[c]) for c in OP_CLASSES},
                "overhead_ms": r(self.overhead_ms)}


def _peaks(profile: DeviceProfile, dtype: str) -> tuple[float, float]:
    """(peak GFLOP/s for dtype, memory GB/s) or a DeviceError that says what to add."""
    hw = profile.hardware or {}
    peaks = hw.get("peak_gflops") or {}
    bw = hw.get("memory_bandwidth_gbs")
    missing = []
    if not peaks:
        missing.append("hardware.peak_gflops")
    elif dtype not in peaks:
        raise DeviceError(
            f"device profile '{profile.name}' has no hardware.peak_gflops.{dtype} "
            f"(has: {', '.join(sorted(peaks))}); cannot estimate {dtype} kernels",
            f"add the {dtype} peak to the profile or estimate a dtype it lists")
    if not isinstance(bw, (int, float)) or bw <= 0:
        missing.append("hardware.memory_bandwidth_gbs")
    if missing:
        raise DeviceError(
            f"device profile '{profile.name}' lacks {' and '.join(missing)}, which an "
            f"analytic latency estimate needs",
            "add the datasheet figures to the profile's hardware section, or measure the "
            "device instead (hwprune profile)")
    return float(peaks[dtype]), float(bw)


def breakdown(sig: KernelSig, profile: DeviceProfile, factors: Factors) -> dict[str, Any]:
    """The parts of :func:`estimate_ms`: compute_ms, memory_ms, overhead_ms, bound, class."""
    peak_gflops, bw_gbs = _peaks(profile, sig.dtype)
    cls = op_class(sig)
    elem = _ELEM_BYTES.get(sig.dtype)
    if elem is None:
        raise DeviceError(f"unknown dtype '{sig.dtype}' for an estimate; known: "
                          f"{', '.join(_ELEM_BYTES)}")
    compute_ms = 0.0
    if cls in COMPUTE_CLASSES:
        # GFLOP/s -> FLOP per ms is 1e6
        compute_ms = 2.0 * sig.macs / (peak_gflops * 1e6 * factors.compute_efficiency[cls])
    memory_ms = sig.bytes_moved(elem) / (bw_gbs * 1e6 * factors.bandwidth_efficiency[cls])
    return {"class": cls, "compute_ms": compute_ms, "memory_ms": memory_ms,
            "overhead_ms": factors.overhead_ms,
            "bound": "compute" if compute_ms >= memory_ms else "memory",
            "estimate_ms": max(compute_ms, memory_ms) + factors.overhead_ms}


def estimate_ms(sig: KernelSig, profile: DeviceProfile, factors: Factors) -> float:
    """Estimated latency of one kernel in milliseconds (model ``roofline-v1``)."""
    return breakdown(sig, profile, factors)["estimate_ms"]


def _calibration_path(name: str) -> Path:
    return profiles_dir() / "calibration" / f"{name}.json"


def load_calibration(device_class: str) -> dict[str, Any]:
    """The calibration document that serves ``device_class`` (phone-cpu, edge-gpu...)."""
    name = _CALIBRATION_FILES.get(device_class)
    if name is None:
        raise DeviceError(
            f"no analytic latency calibration for device class '{device_class}'; known: "
            f"{', '.join(_CALIBRATION_FILES)}",
            "measure this device (hwprune profile) or pass factors= explicitly")
    path = _calibration_path(name)
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DeviceError(f"cannot read latency calibration '{path}': {exc}") from exc
    if device_class not in doc.get("factors", {}):
        raise DeviceError(f"latency calibration '{path}' has no factors for '{device_class}'")
    return doc


class AnalyticEstimator:
    """Roofline latency estimates for one device profile.

    ``profile`` is a :class:`DeviceProfile` or a profile name. ``factors`` overrides the
    shipped calibration (then ``source`` names where they came from). The profile must
    have ``hardware.peak_gflops`` and ``hardware.memory_bandwidth_gbs``; otherwise a
    :class:`~hwprune.errors.DeviceError` is raised here, not at the first estimate.

    >>> est = AnalyticEstimator("pixel7")
    >>> est.estimate_ms(KernelSig("conv", 32, 64, h=112, w=112))   # doctest: +SKIP
    """

    def __init__(self, profile: DeviceProfile | str, factors: Factors | None = None,
                 source: str | None = None) -> None:
        self.profile = load_profile(profile) if isinstance(profile, str) else profile
        _peaks(self.profile, "float32")  # fail early and clearly
        if factors is None:
            doc = load_calibration(self.profile.device_class)
            self.factors = Factors.from_dict(doc["factors"][self.profile.device_class])
            self.status = str(doc.get("status", "uncalibrated"))
            self.source = source or str(doc.get("calibrated_on") or "none")
            self._calibration = doc
        else:
            self.factors = factors
            self.status = "user-supplied"
            self.source = source or "user-supplied factors"
            self._calibration = None

    @property
    def method(self) -> str:
        """How entries were obtained, recorded per table entry; always says 'estimated'."""
        if self.status == "calibrated":
            base = f"estimated:{MODEL_VERSION} calibrated on {self.source}"
            origin = (self._calibration or {}).get("calibration_device")
            if origin and origin != self.profile.name:
                # same efficiencies, this device's own peaks: say so in every entry
                base += f" ({origin}), scaled to {self.profile.name} peaks"
            return base
        if self.status == "uncalibrated":
            return (f"estimated:{MODEL_VERSION} uncalibrated {self.profile.device_class} "
                    f"defaults (no measurements)")
        return f"estimated:{MODEL_VERSION} with {self.source}"

    @property
    def estimates_runtime(self) -> str | None:
        """The runtime whose speed the estimates follow: the one its calibration data was
        timed with (None when uncalibrated or user-supplied)."""
        return (self._calibration or {}).get("calibration_runtime") if self.status == "calibrated" else None

    def estimate_ms(self, sig: KernelSig) -> float:
        """Estimated latency of one kernel on this device, in milliseconds."""
        return estimate_ms(sig, self.profile, self.factors)

    def breakdown(self, sig: KernelSig) -> dict[str, Any]:
        """compute_ms, memory_ms, overhead_ms, which bound binds, and the op class."""
        return breakdown(sig, self.profile, self.factors)

    def describe(self) -> dict[str, Any]:
        """Everything a table needs to record about how its estimates were made."""
        hw = self.profile.hardware
        d: dict[str, Any] = {
            "method": self.method,
            "model": MODEL_VERSION,
            "status": self.status,
            "device": self.profile.name,
            "device_class": self.profile.device_class,
            "peak_gflops": dict(hw.get("peak_gflops") or {}),
            "memory_bandwidth_gbs": hw.get("memory_bandwidth_gbs"),
            "factors": self.factors.to_dict(),
            "source": self.source,
            "estimates_runtime": self.estimates_runtime,
        }
        if self._calibration is not None:
            d["calibration_file"] = f"device_profiles/calibration/{_CALIBRATION_FILES[self.profile.device_class]}.json"
            for key in ("assumptions", "validation"):
                if key in self._calibration:
                    d[key] = self._calibration[key]
        return d

    def __repr__(self) -> str:
        return f"AnalyticEstimator({self.profile.name!r}, {self.method!r})"
