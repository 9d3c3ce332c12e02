"""``hwprune``: hardware-aware pruning from measured latency tables.

One module per command (``add_parser`` and ``run``); shared flags come from
:mod:`hwprune.cli._options`. Each command parses and validates its flags, calls the
library and prints. Errors a user can cause print one line (``hwprune: error: ...``) and
exit with code 1; ``--debug`` shows the traceback.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings

from hwprune import __version__
from hwprune.cli import _bench, _devices, _export, _latency, _models, _profile, _prune, _search, _worker
from hwprune.cli._options import Parser
from hwprune.errors import HwpruneError

COMMANDS = (_models, _devices, _prune, _profile, _latency, _search, _export, _bench, _worker)
EPILOG = """examples:
  hwprune models
  hwprune devices
  hwprune prune --model resnet18 --ratio 0.3 --out pruned/
  hwprune profile --device host --model resnet18
  hwprune latency --device host --model resnet18 --measure
  hwprune search --device pixel7 --latency 50%
  hwprune search --device host --latency 0.6ms --memory 2MB --trials 100
  hwprune export hwprune-work/runs/demo-host-20261201-101500 --device host
  hwprune bench hwprune-work/runs/demo-host-20261201-101500/model.onnx --device host

Your tables, runs and tuning records go under ./hwprune-work (--work-dir or $HWPRUNE_WORK_DIR).
Run 'hwprune COMMAND --help' for the flags of a command."""


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="hwprune", description=(
        "Hardware-aware channel pruning: search per-layer pruning ratios that maximize accuracy "
        "under a latency budget predicted from per-device latency tables, then compile the "
        "winner for the device."), epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"hwprune {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for command in COMMANDS:
        command.add_parser(sub)
    return p


def _join_negative_values(argv: list[str]) -> list[str]:
    """``--latency -5ms`` reaches the budget parser (and its clear message) instead of
    argparse reading ``-5ms`` as an unknown flag."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        tok = argv[i]
        if tok in ("--latency", "--memory", "--ratio") and i + 1 < len(argv) \
                and argv[i + 1][:1] == "-" and argv[i + 1][1:2].isdigit():
            out.append(f"{tok}={argv[i + 1]}")
            i += 2
            continue
        out.append(tok)
        i += 1
    return out


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(_join_negative_values(list(sys.argv[1:] if argv is None else argv)))
    except SystemExit as exc:  # --help, --version, or a flag refused with its one line
        return int(exc.code or 0)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    if not args.debug:
        warnings.filterwarnings("ignore")
    try:
        return int(args.func(args) or 0)
    except HwpruneError as exc:
        if args.debug:
            raise
        text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())  # one line, always
        print(f"hwprune: error: {text}", file=sys.stderr)
        if getattr(args, "format", "text") == "json":  # a machine reading stdout gets an object too
            message = " ".join(line.strip() for line in str(exc.args[0] if exc.args else exc).splitlines())
            print(json.dumps({"error": message, "hint": exc.hint, "type": type(exc).__name__, "exit_code": 1}))
        return 1
    except KeyboardInterrupt:
        print("hwprune: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
