"""Analytic latency estimates, checked against real Pixel 1 timings (fast: < 2 s)."""
from __future__ import annotations

import dataclasses
import json

import pytest

from hwprune._paths import profiles_dir
from hwprune.latency._estimate_fit import (PHONE_CPU_PRIOR, WIDTHS, dataset_dir, evaluate,
                                        fit_factors, load_samples, mobilenet_v1_sigs)
from hwprune.latency._estimate import AnalyticEstimator, Factors, op_class
from hwprune.devices._profile import load_profile
from hwprune.latency._tflite_log import average_runs, parse_benchmark_log
from hwprune.errors import DataError, DeviceError
from hwprune.runtimes.kernels import KernelSig

# Measured with the shipped calibration (benchmarks/results/estimator_pixel1.md):
# per-layer median |error| 6.1 % (width 1.0), 8.0 % (0.75); leave-one-width-out 9.9 % / 6.1 %.
MEDIAN_LAYER_ERROR_BOUND_PCT = 12.0
LOO_MEDIAN_LAYER_ERROR_BOUND_PCT = 15.0
E2E_BOUND_PCT = 15.0
ALL_DEVICES = ("pixel1", "pixel7", "jetson-orin-nano", "a100", "h100")


@pytest.fixture(scope="module")
def pixel1():
    return load_profile("pixel1")


@pytest.fixture(scope="module")
def samples():
    return {w: load_samples(w) for w in WIDTHS}


# ------------------------------------------------------------------ parser
def test_parser_reads_run_order_table():
    nodes = parse_benchmark_log(dataset_dir() / "mobilenet_1.0_run1.txt")
    assert len(nodes) == 31
    assert nodes[0].node_type == "CONV_2D"
    assert nodes[0].name == "MobilenetV1/MobilenetV1/Conv2d_0/Relu6"
    assert nodes[0].avg_ms == pytest.approx(4.245)
    assert nodes[-1].node_type == "SOFTMAX"
    assert sum(n.avg_ms for n in nodes) == pytest.approx(123.3, abs=0.05)


def test_parser_averages_three_runs():
    runs = [parse_benchmark_log(p) for p in sorted(dataset_dir().glob("mobilenet_0.75_run*.txt"))]
    assert len(runs) == 3
    avg = average_runs(runs)
    assert avg[0].runs == 3
    assert avg[0].avg_ms == pytest.approx(sum(r[0].avg_ms for r in runs) / 3)


def test_parser_rejects_a_log_without_table(tmp_path):
    bad = tmp_path / "x.txt"
    bad.write_text("native : benchmark_tflite_model.cc:480 STARTING!\n")
    with pytest.raises(DataError, match="Run Order"):
        parse_benchmark_log(bad)


def test_mobilenet_sigs_match_known_macs():
    # MobileNetV1 1.0 at 224: 569 M multiply-adds (Howard et al. 2017, table 8)
    macs = sum(s.macs for _, s in mobilenet_v1_sigs("1.0"))
    assert macs == pytest.approx(569e6, rel=0.01)
    classes = [op_class(s) for _, s in mobilenet_v1_sigs("0.75")]
    assert classes.count("conv_dw") == 13 and classes.count("conv_pw") == 13
    assert classes[0] == "conv_dense" and classes[-1] == "gemm"


# ------------------------------------------------------------------ accuracy on real data
@pytest.mark.parametrize("width", WIDTHS)
def test_end_to_end_within_15_percent(width, samples, pixel1):
    est = AnalyticEstimator(pixel1)
    measured = sum(s.measured_ms for s in samples[width])
    estimated = sum(est.estimate_ms(s.sig) for s in samples[width])
    assert abs(estimated - measured) / measured < E2E_BOUND_PCT / 100


@pytest.mark.parametrize("width", WIDTHS)
def test_per_layer_median_error_bounded(width, samples, pixel1):
    ev = evaluate(samples[width], pixel1, AnalyticEstimator(pixel1).factors)
    assert ev["median_abs_error_pct"] < MEDIAN_LAYER_ERROR_BOUND_PCT


@pytest.mark.parametrize("train,test", [("1.0", "0.75"), ("0.75", "1.0")])
def test_leave_one_width_out(train, test, samples, pixel1):
    fit = fit_factors(samples[train], pixel1, PHONE_CPU_PRIOR)
    ev = evaluate(samples[test], pixel1, fit.factors)
    assert abs(ev["end_to_end_error_pct"]) < E2E_BOUND_PCT
    assert ev["median_abs_error_pct"] < LOO_MEDIAN_LAYER_ERROR_BOUND_PCT


def test_shipped_calibration_is_what_the_fit_gives(samples, pixel1):
    shipped = AnalyticEstimator(pixel1).factors.to_dict()
    refit = fit_factors(samples["1.0"] + samples["0.75"], pixel1, PHONE_CPU_PRIOR).factors.to_dict()
    for group in ("compute_efficiency", "bandwidth_efficiency"):
        for cls, v in shipped[group].items():
            assert refit[group][cls] == pytest.approx(v, rel=1e-3), (group, cls)
    assert refit["overhead_ms"] == pytest.approx(shipped["overhead_ms"], rel=1e-3)


def test_calibration_records_the_peaks_it_was_fitted_with(pixel1):
    doc = json.loads((profiles_dir() / "calibration" / "phone-cpu.json").read_text())
    assert doc["profile_hardware"]["peak_gflops_float32"] == pixel1.peak_gflops("float32")
    assert doc["profile_hardware"]["memory_bandwidth_gbs"] == pixel1.hardware["memory_bandwidth_gbs"]
    assert doc["status"] == "calibrated" and doc["calibrated_on"] == "pixel1-tflite-mobilenetv1"


# ------------------------------------------------------------------ model properties
@pytest.mark.parametrize("device", ALL_DEVICES)
def test_conv_estimates_monotone_in_channels(device):
    est = AnalyticEstimator(device)
    channels = [1, 2, 3, 8, 16, 24, 31, 32, 64, 96, 128, 256, 512, 1000, 1024, 2048]
    for hw in (7, 28, 112):
        for k in (1, 3):
            # cout grows, cin fixed (and the reverse)
            for fixed in (3, 64, 512):
                t_out = [est.estimate_ms(KernelSig("conv", fixed, c, k=(k, k), pads=(k // 2,) * 4, h=hw, w=hw))
                         for c in channels]
                t_in = [est.estimate_ms(KernelSig("conv", c, fixed, k=(k, k), pads=(k // 2,) * 4, h=hw, w=hw))
                        for c in channels]
                assert t_out == sorted(t_out), (device, hw, k, fixed, "cout")
                assert t_in == sorted(t_in), (device, hw, k, fixed, "cin")
            # depthwise: channels move together (groups == cin == cout)
            t_dw = [est.estimate_ms(KernelSig("conv", c, c, k=(3, 3), pads=(1, 1, 1, 1), groups=c,
                                              h=hw, w=hw)) for c in channels]
            assert t_dw == sorted(t_dw), (device, hw, "dw")


def test_estimates_positive_for_every_op():
    est = AnalyticEstimator("pixel7")
    for op in ("conv", "add", "gemm", "maxpool", "avgpool", "gap", "flatten", "act", "concat", "other"):
        k = (2, 2) if op in ("maxpool", "avgpool") else (1, 1)
        assert est.estimate_ms(KernelSig(op, 16, 16, k=k, h=8, w=8)) > 0


def test_profile_without_peaks_raises_device_error():
    host = load_profile("host")  # measurable here, so it carries no datasheet peaks
    with pytest.raises(DeviceError, match="peak_gflops"):
        AnalyticEstimator(host)
    no_bw = dataclasses.replace(load_profile("pixel1"), hardware={"peak_gflops": {"float32": 10.0}})
    with pytest.raises(DeviceError, match="memory_bandwidth_gbs"):
        AnalyticEstimator(no_bw)


def test_missing_dtype_peak_names_what_exists():
    est = AnalyticEstimator("pixel1")
    with pytest.raises(DeviceError, match="float16.*has: float32"):
        est.estimate_ms(KernelSig("conv", 8, 8, dtype="float16"))


def test_invalid_factors_rejected():
    bad = PHONE_CPU_PRIOR.to_dict()
    bad["compute_efficiency"]["conv_pw"] = 1.5
    with pytest.raises(DeviceError, match="conv_pw"):
        Factors.from_dict(bad)


@pytest.mark.parametrize("device", ALL_DEVICES)
def test_method_says_estimated(device):
    est = AnalyticEstimator(device)
    assert est.method.startswith("estimated:roofline-v1")
    d = est.describe()
    assert d["method"] == est.method and d["device"] == device
    assert set(d["factors"]) == {"compute_efficiency", "bandwidth_efficiency", "overhead_ms"}
    if device.startswith("pixel"):
        assert "pixel1-tflite-mobilenetv1" in est.method and d["status"] == "calibrated"
    else:
        assert "uncalibrated" in est.method and d["status"] == "uncalibrated"
    if device == "pixel7":
        assert "scaled to pixel7" in est.method


def test_gpu_overhead_per_kernel():
    tiny = KernelSig("add", 8, 8, h=2, w=2)
    assert 0.005 <= AnalyticEstimator("a100").estimate_ms(tiny) < 0.02
    assert 0.02 <= AnalyticEstimator("jetson-orin-nano").estimate_ms(tiny) < 0.06
