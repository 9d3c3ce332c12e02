"""``hwprune devices``: device profiles and the state of their latency tables."""
from __future__ import annotations

import argparse
from typing import Any

from hwprune.cli._fmt import emit_json, table
from hwprune.cli._options import add_format, add_work_dir

HELP = "list device profiles and their latency tables"


def add_parser(sub) -> None:
    s = sub.add_parser("devices", help=HELP, description=(
        HELP + ": which runtime times each device, which deploys it, and whether its table is "
        "measured, estimated, stale (measured on another CPU or runtime) or missing; your own "
        "table (under the work folder) is shown when you have one, else the shipped one."))
    s.add_argument("--tables", metavar="DIR", help="your latency table folder (default: WORK_DIR/tables)")
    add_work_dir(s)
    add_format(s)
    s.set_defaults(func=run)


def _device_row(name: str, args: argparse.Namespace) -> dict[str, Any]:
    from hwprune._paths import resolve_table
    from hwprune.devices import load_profile
    from hwprune.errors import HwpruneError
    from hwprune.latency import LatencyTable
    from hwprune.latency._drift import measure_drift

    prof = load_profile(name)
    directory, origin = resolve_table(name, args.tables, args.work_dir)
    info: dict[str, Any] = {"name": name, "class": prof.device_class, "runtime": prof.runtime.get("name"),
                            "deploy_runtime": prof.deploy_runtime, "reach": prof.reach.get("method"),
                            "table": "none", "table_origin": None, "models": [], "entries": {},
                            "description": prof.description}
    if not LatencyTable.exists(directory, name):
        return info
    info["table_origin"] = f"{origin}: {directory}"
    try:
        t = LatencyTable.load(directory, name)
        info.update(table=t.kind, models=sorted(t.meta.get("models", {})), entries=t.counts())
        if prof.measurable_here and t.measured_keys():
            try:
                t.check_fresh(prof.local_runtime().identity())
                drift = measure_drift(t, prof.local_runtime())   # a few seconds
                info["drift"] = drift.to_dict() if drift else None
            except HwpruneError as exc:
                info.update(table="stale", stale_reason=str(exc))
    except HwpruneError as exc:
        info.update(table="corrupt", error=str(exc))
    return info


def _drift_text(drift: dict | None) -> str:
    """This machine's speed against the table's build: 'x1.12' = 12% slower now."""
    if not drift:
        return "-"
    text = f"x{drift['ratio']:.2f}"
    if not drift["significant"]:
        return text
    scaled = f", predictions x{drift['factor']:.2f}" if abs(drift["factor"] - drift["ratio"]) >= 0.005 else ""
    return f"{text} (drifted{scaled})"


def run(args: argparse.Namespace) -> int:
    from hwprune._paths import tables_dir
    from hwprune.devices import list_profiles

    from hwprune.cli._checks import check_tables_to_read

    check_tables_to_read(args)
    rows = [_device_row(name, args) for name in list_profiles()]
    if args.format == "json":
        emit_json(rows)
        return 0
    table([[r["name"], r["class"], r["runtime"], r["deploy_runtime"], r["table"],
            (r["table_origin"] or "-").split(":")[0], _drift_text(r.get("drift")),
            ", ".join(m.split("@")[0] for m in r["models"]) or "-"] for r in rows],
          ["device", "class", "timed with", "deploys with", "table", "whose", "speed now", "models in table"])
    print(f"\nYour tables: {tables_dir(args.tables, args.work_dir)} (shipped ones are read where you have "
          "none). 'measured' = timed on the device; 'estimated' = analytic model "
          "(see 'hwprune profile --help' to measure a real device). 'speed now': the table's reference model "
          "re-timed now against its build's median round (x1.10 = 10% slower; predictions are rescaled when it "
          "is 5% slower than the build's slowest round, or 5% faster than the build's idle estimate).")
    return 0
