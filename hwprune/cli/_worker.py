"""``hwprune worker``: the far end of ``profile --runner``."""
from __future__ import annotations

import argparse

HELP = "time kernels sent on stdin (used by profile --runner)"


def add_parser(sub) -> None:
    s = sub.add_parser("worker", help=HELP, description=(
        "Read timing requests as JSON lines on stdin and answer on stdout. You do not run it "
        "yourself: 'hwprune profile --runner CMD' starts it through CMD (e.g. ssh)."))
    s.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hwprune.devices._worker import serve

    return serve()
