"""``hwprune profile``: build or extend a device's latency table for a model."""
from __future__ import annotations

import argparse
import sys

from hwprune.cli._checks import host_port
from hwprune.cli._fmt import emit_json
from hwprune.cli._options import (add_device, add_format, add_keep_layers, add_model, add_timing, check_output_dir, float_in,
                                  int_at_least, load_model, timing_protocol)

HELP = "build or extend a device's latency table for a model"
DESCRIPTION = (
    "Time every kernel the model's pruning space can produce on a sparse grid of channel counts "
    "(read from per-node profiles of whole pruned models where the runner can, else one micro "
    "model per kernel; the rest interpolated and marked so), calibrate against end-to-end runs, "
    "and save the table in your work folder (the shipped tables are never changed). Resumes "
    "where a killed run stopped; a model already in the table is not timed again. Devices that "
    "are not this machine are reached with --runner (any command that starts 'hwprune worker' "
    "there, e.g. over ssh) or --rpc (a TVM RPC tracker); without either they get an analytic estimate.")
EPILOG = """examples:
  hwprune profile --device host --model resnet18
  hwprune profile --device jetson-orin-nano --model demo --runner 'ssh me@jetson hwprune worker'
  hwprune profile --device pixel7 --model demo --rpc 10.0.0.5:9190 --key pixel7
  hwprune profile --device pixel7 --model resnet18 --estimate"""


def add_parser(sub) -> None:
    s = sub.add_parser("profile", help=HELP, description=DESCRIPTION, epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_device(s)
    add_model(s)
    add_keep_layers(s)
    g = s.add_argument_group("where the device is")
    g.add_argument("--runner", metavar="CMD", help="command that runs 'hwprune worker' on the device")
    g.add_argument("--rpc", metavar="HOST:PORT", type=host_port, help="TVM RPC tracker address")
    g.add_argument("--key", help="device key registered with the TVM RPC tracker")
    g.add_argument("--estimate", action="store_true", help="fill the table with analytic estimates")
    s.add_argument("--anchors", type=int_at_least(2), default=5,
                   help="measured channel counts per group, >= 2 (default 5)")
    s.add_argument("--multiple", type=int_at_least(1), default=8,
                   help="channel counts are multiples of this, >= 1 (default 8)")
    s.add_argument("--threads", type=int_at_least(1), help="override the profile's thread count (>= 1)")
    add_timing(s, "kernel", warmup=10, repeats=50, min_time=0.1)
    s.add_argument("--timeout", type=float_in(0.0, low_open=True), default=60.0,
                   help="seconds per kernel before giving up, > 0 (default 60)")
    s.add_argument("--rebuild", action="store_true", help="discard your existing table and start over")
    s.add_argument("--no-calibrate", action="store_true", help="skip the end-to-end calibration runs")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_format(s)
    s.set_defaults(func=run)


def _say_drift(profile, table, analysis, report) -> None:
    """A model the table already covered: say when this machine has changed speed since."""
    from hwprune.latency._drift import measure_drift

    if report.timed or not profile.measurable_here:
        return
    drift = measure_drift(table, profile.local_runtime(), analysis.model_key)
    report.drift = drift.to_dict() if drift else None
    if drift is not None and drift.significant:
        print(f"hwprune: warning: {drift.describe(profile.name)}; predictions are rescaled by it "
              f"(--no-rescale keeps the table's values), or rebuild the table: hwprune profile "
              f"--device {profile.name} --model {analysis.lm.spec or analysis.lm.model_id} --rebuild", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from hwprune._paths import tables_dir
    from hwprune.devices import load_profile, runner_for
    from hwprune.latency import AnalyticEstimator, LatencyTable, estimate_model, profile_model
    from hwprune.latency._store import table_for_update
    from hwprune.pruning import analyze

    profile = load_profile(args.device)
    check_output_dir(tables_dir(args.tables, args.work_dir), "--tables")
    runner = None if args.estimate else runner_for(profile, timing_protocol(args), command=args.runner,
                                                   rpc=args.rpc, key=args.key, threads=args.threads)
    analysis = analyze(load_model(args), multiple=args.multiple)
    directory = tables_dir(args.tables, args.work_dir)
    table, note = table_for_update(profile, directory)
    if note and args.format != "json":
        print(f"hwprune: {note}", file=sys.stderr)
    if runner is None:
        est = AnalyticEstimator(profile)
        report = estimate_model(analysis, table, est)
        kind = f"ESTIMATED ({est.method})"
    else:
        with runner:
            report = profile_model(analysis, table, runner, anchors=args.anchors, calibrate=not args.no_calibrate,
                                   progress=not args.no_progress, rebuild=args.rebuild)
        kind = "measured"
        if report.stale_note:
            print(f"hwprune: warning: {report.stale_note}; measuring anew", file=sys.stderr)
        _say_drift(profile, table, analysis, report)
        if report.unsteady_models:
            print(f"hwprune: warning: this machine's speed kept moving during the build ({report.extra_rounds} "
                  f"calibration rounds re-run; the fastest rounds of {len(report.unsteady_models)} calibration "
                  f"models still differ by more than 5%); run the same command with --rebuild on a quieter "
                  f"machine for steadier values", file=sys.stderr)
        elif report.extra_rounds:
            print(f"hwprune: the machine's speed moved during the build: {report.extra_rounds} calibration rounds "
                  f"re-run until they agreed", file=sys.stderr)
    result = {**report.to_dict(), "kind": kind, "table": str(LatencyTable.paths(directory, profile.name)[0])}
    if args.format == "json":
        emit_json(result)
        return 0
    print(f"{profile.name} / {analysis.model_key}: {report.needed} kernel signatures in the pruning space")
    if runner is None:
        print(f"  {report.estimated} entries {kind}")
        print(f"  to measure the real device: {profile.measure_hint(args.model)}")
    else:
        print(f"  timed now: {report.timed}, already in the table: {report.reused}, "
              f"interpolated: {report.interpolated}, end-to-end calibration points: {report.calibration_points}")
    print(f"  {report.seconds:.1f} s; table: {result['table']}")
    return 0
