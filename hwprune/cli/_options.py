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
                        "layer in it) whose channels are never pruned; the layers producing the output are always kept")


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


def add_rescale(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-rescale", action="store_true",
                   help="keep the table's values when this machine now runs faster or slower than when "
                        "the table was built (by default predictions follow the measured drift)")


def add_latency_stat(p) -> None:
    p.add_argument("--latency-stat", choices=("median", "p90"), default="median",
                   help="what the latency budget holds for: the median of single runs, what a stopwatch "
                        "reports (default), or their 90th percentile (from the run-to-run spread the table's "
                        "calibration kept)")


def drift_note(predictor, device: str) -> str | None:
    """One line on the machine's drift since the table was built (None when within 5%)."""
    d = predictor.drift
    if d is None or not d.significant:
        return None
    done = (f"predictions scaled by {d.factors()} (--no-rescale keeps the table's values)"
            if predictor.rescale != 1.0 else "predictions are the table's values (--no-rescale)")
    return f"{d.describe(device)}; {done}"


def add_timing(p: argparse.ArgumentParser, what: str, *, warmup: int, repeats: int, min_time: float) -> None:
    """``--warmup``, ``--repeats``, ``--min-time``: the same three numbers of the timing
    protocol (:class:`hwprune.runtimes.timing.TimingProtocol`) wherever something is timed."""
    g = p.add_argument_group("timing")
    g.add_argument("--warmup", type=int_at_least(0), default=warmup,
                   help=f"untimed runs per {what} first, >= 0 (default {warmup})")
    g.add_argument("--repeats", type=int_at_least(1), default=repeats,
                   help=f"timed runs per {what}, at least; >= 1 (default {repeats})")
    g.add_argument("--min-time", type=float_in(0.0), default=min_time,
                   help=f"timed seconds per {what}, at least; >= 0 (default {min_time:g})")


def timing_protocol(args: argparse.Namespace, timeout_s: float = 60.0):
    from hwprune.runtimes.timing import TimingProtocol

    return TimingProtocol(warmup=args.warmup, repeats=args.repeats, min_time_s=args.min_time,
                          timeout_s=getattr(args, "timeout", None) or timeout_s)


def load_model(args: argparse.Namespace):
    from hwprune.models import load_model as _load

    lm = _load(args.model, args.weights, args.input_shape)
    lm.keep_layers = keep_layers(args)
    return lm


def int_at_least(low: int):
    """An argparse type: an integer >= ``low`` (the range is stated in the error)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {text!r}")
        return value
    return parse


def float_in(low: float, high: float | None = None, *, low_open: bool = False, high_open: bool = True):
    """An argparse type: a finite number in the stated range."""
    import math

    lo, hi = ("(" if low_open else "["), ("" if high is None else (")" if high_open else "]"))
    rng = f"{lo}{low:g}, {'inf)' if high is None else f'{high:g}{hi}'}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number in {rng}, got {text!r}") from None
        ok = math.isfinite(value) and (value > low if low_open else value >= low)
        if high is not None:
            ok = ok and (value < high if high_open else value <= high)
        if not ok:
            raise argparse.ArgumentTypeError(f"must be a number in {rng}, got {text!r}")
        return value
    return parse


def check_output_dir(path, flag: str) -> None:
    """Refuse, before any expensive work, an output folder that cannot be written: a file
    in its place, or a folder (or its nearest existing parent) without write permission."""
    import os
    from pathlib import Path

    from hwprune.errors import ConfigError

    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ConfigError(f"{flag} '{p}' is a file, not a folder", f"choose another {flag}")
    probe = p
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise ConfigError(f"{flag} '{p}' lies under the file '{probe}'", f"choose another {flag}")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} '{p}' cannot be written ('{probe}' is not writable)", f"choose another {flag}")
    import shutil

    free = shutil.disk_usage(probe).free
    if free < MIN_FREE_BYTES:
        raise ConfigError(f"{flag} '{p}' has no space left ({free / 2**20:.1f} MiB free on '{probe}', "
                          f"at least {MIN_FREE_BYTES / 2**20:.0f} MiB needed)", "free some space or choose another "
                          f"{flag}")


#: what an output folder needs free before a command starts writing (tables, runs, artifacts)
MIN_FREE_BYTES = 32 * 2**20
