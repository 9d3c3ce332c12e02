"""Shared pieces of the command line: the parser class and option builders, so that a
flag means one thing in every command."""
from __future__ import annotations

import argparse
import sys

__all__ = ["Parser", "add_format", "add_model", "add_keep_layers", "keep_layers", "add_device", "add_work_dir", "add_timing", "load_model",
           "timing_protocol"]


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors that point at --help."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see '{self.prog} --help')\n")
        sys.exit(2)


def add_format(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=("text", "json"), default="text",
                   help="'json' prints one machine-readable object (default: text)")


def add_model(p: argparse.ArgumentParser, required: bool = True, default: str | None = None) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", required=required and default is None, default=default,
                   help="zoo name (see 'hwprune models'), path/to/file.py:factory or "
                        "package.module:factory" + (f" (default: {default})" if default else ""))
    g.add_argument("--weights", help="a state_dict saved with torch.save(model.state_dict(), PATH)")
    g.add_argument("--input-shape", help="NxCxHxW, e.g. 1x3x224x224 (zoo models know theirs)")


def add_keep_layers(p: argparse.ArgumentParser) -> None:
    """``--keep-layers NAME,...``: layers that are not pruned (the pruning space, its plans,
    costs and kernels all follow). :func:`load_model` puts them on the loaded model."""
    p.add_argument("--keep-layers", metavar="NAME,...", default="",
                   help="layers (module paths, as in model.named_modules(); a block pins every "
                        "layer in it) whose channels are never pruned; the classifier output always is kept")


def keep_layers(args: argparse.Namespace) -> tuple[str, ...]:
    return tuple(n.strip() for n in (getattr(args, "keep_layers", "") or "").split(",") if n.strip())


def add_work_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--work-dir", metavar="DIR",
                   help="where your tables, runs and tuning records go "
                        "(default: $HWPRUNE_WORK_DIR or ./hwprune-work)")


def add_device(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--device", required=required,
                   help="device profile name (see 'hwprune devices') or a profile .json file")
    p.add_argument("--tables", metavar="DIR",
                   help="your latency table folder (default: $HWPRUNE_TABLES or WORK_DIR/tables; "
                        "tables shipped with hwprune are read when you have none for the device)")
    add_work_dir(p)


def add_timing(p: argparse.ArgumentParser, what: str, *, warmup: int, repeats: int, min_time: float) -> None:
    """``--warmup``, ``--repeats``, ``--min-time``: the same three numbers of the timing
    protocol (:class:`hwprune.runtimes.timing.TimingProtocol`) wherever something is timed."""
    g = p.add_argument_group("timing")
    g.add_argument("--warmup", type=int, default=warmup, help=f"untimed runs per {what} first (default {warmup})")
    g.add_argument("--repeats", type=int, default=repeats, help=f"timed runs per {what}, at least (default {repeats})")
    g.add_argument("--min-time", type=float, default=min_time,
                   help=f"timed seconds per {what}, at least (default {min_time:g})")


def timing_protocol(args: argparse.Namespace, timeout_s: float = 60.0):
    from hwprune.runtimes.timing import TimingProtocol

    return TimingProtocol(warmup=args.warmup, repeats=args.repeats, min_time_s=args.min_time,
                          timeout_s=getattr(args, "timeout", None) or timeout_s)


def load_model(args: argparse.Namespace):
    from hwprune.models import load_model as _load

    lm = _load(args.model, args.weights, args.input_shape)
    lm.keep_layers = keep_layers(args)
    return lm
