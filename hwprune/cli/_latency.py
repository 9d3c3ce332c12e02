"""``hwprune latency``: predict (and measure) a model's latency on a device."""
from __future__ import annotations

import argparse
import sys

from hwprune.cli._checks import check_tables_to_read
from hwprune.cli._fmt import emit_json, fmt_ms, table
from hwprune.cli._options import (add_device, add_format, add_keep_layers, add_latency_stat, add_model, add_rescale,
                                  add_timing, drift_note, int_at_least, load_model)
from hwprune.errors import ConfigError

HELP = "predict (and measure) a model's latency on a device"


def add_parser(sub) -> None:
    s = sub.add_parser("latency", help=HELP, description=(
        "Print the predicted latency of each kernel of the model (dense, or pruned by --plan) "
        "and the calibrated end-to-end prediction; --measure also times the model end to end "
        "on this machine with the device's runtime, with the standard stopwatch of 'hwprune bench' "
        "(a fresh process, warm-up, median and p90 of single runs), --readings times, fastest kept."),
        epilog="examples:\n  hwprune latency --device host --model resnet18 --plan plan.json --measure\n"
               "  hwprune latency --device pixel1 --model my_net.py:build --input-shape 1x3x224x224",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_device(s)
    add_model(s)
    add_keep_layers(s)
    s.add_argument("--plan", help="a plan.json; default: the dense model")
    s.add_argument("--measure", action="store_true", help="also measure end to end (this machine only)")
    add_timing(s, "model (--measure)", warmup=10, repeats=100, min_time=1.0)
    s.add_argument("--readings", type=int_at_least(1), default=3,
                   help="--measure reads the stopwatch this many times, each in a fresh process, and "
                        "reports the fastest: the otherwise idle machine (default 3)")
    add_rescale(s)
    add_latency_stat(s)
    add_format(s)
    s.set_defaults(func=run)


def _short_key(key: str) -> str:
    parts = key.split("|")[1:-1]
    return " ".join(p for p in parts if not p.endswith("=none") and p != "res=0")


def measure_plan_ms(analysis, plan, profile, args: argparse.Namespace) -> float:
    """End-to-end latency (``--latency-stat``) of the pruned model on this machine with the
    device's runtime and the standard stopwatch (:meth:`hwprune.runtimes.Runtime.bench`)."""
    from hwprune.onnx_export import to_onnx_bytes

    if not profile.measurable_here:
        raise ConfigError(f"--measure needs the device at hand; '{profile.name}' is not this machine",
                          "measure with hwprune profile --runner/--rpc, or use --device host")
    pruned = analysis.space.apply(plan)
    result = profile.local_runtime().bench([to_onnx_bytes(pruned, analysis.lm.input_shape)], warmup=args.warmup,
                                           runs=args.repeats, min_time_s=args.min_time, readings=args.readings)[0]
    return result[f"{args.latency_stat}_ms"]


def run(args: argparse.Namespace) -> int:
    from hwprune._paths import resolve_table
    from hwprune.devices import load_profile
    from hwprune.latency import open_predictor
    from hwprune.latency._store import table_warning
    from hwprune.pruning import PruningPlan, analyze

    check_tables_to_read(args)
    profile = load_profile(args.device)
    analysis = analyze(load_model(args))
    plan = PruningPlan.load(args.plan) if args.plan else analysis.space.dense_plan()
    analysis.space.validate(plan)
    directory, origin = resolve_table(profile.name, args.tables, args.work_dir)
    predictor = open_predictor(analysis, args.device, directory, drift=True, rescale=not args.no_rescale,
                               stat=args.latency_stat)
    note = drift_note(predictor, profile.name)
    if note:
        print(f"hwprune: warning: {note}", file=sys.stderr)
    kernels = predictor.kernel_times(plan)
    predicted = predictor.predict_ms(plan)
    measured = measure_plan_ms(analysis, plan, profile, args) if args.measure else None
    warning = table_warning(predictor.table.kind, profile, args.model, predictor.table.meta.estimator)
    result = {"device": profile.name, "model": analysis.lm.model_id, "table_kind": predictor.table.kind,
              "table": f"{origin}: {directory}", "statistic": args.latency_stat,
              "predicted_ms": predicted, "measured_ms": measured,
              "kernel_sum_ms": sum(k.latency_ms for k in kernels),
              "drift": predictor.drift.to_dict() if predictor.drift else None, "rescale": predictor.rescale_at(predictor.table_ms(plan)),
              "calibration": {"scale": predictor.scale, "offset_ms": predictor.offset,
                              "scope": predictor.calibration_scope},
              "kernels": [{"name": k.name, "key": k.key, "latency_ms": k.latency_ms, "source": k.source}
                          for k in kernels]}
    if warning:
        result["warning"] = warning
        print(f"hwprune: warning: {warning}", file=sys.stderr)
    if args.format == "json":
        emit_json(result)
        return 0
    table([[k.name, k.key.split("|")[0], _short_key(k.key), fmt_ms(k.latency_ms), k.source]
           for k in kernels], ["kernel", "op", "signature", "ms", "source"])
    print(f"\nsum of kernels {fmt_ms(result['kernel_sum_ms'])} ms; calibrated ({predictor.calibration_scope}: "
          f"x{predictor.scale:.3f} {predictor.offset:+.3f} ms) predicted end-to-end {args.latency_stat}: "
          f"{fmt_ms(predicted)} ms "
          f"(table: {result['table']})")
    if measured is not None:
        print(f"measured end-to-end: {fmt_ms(measured)} ms ({(predicted - measured) / measured:+.1%} error)")
    return 0
