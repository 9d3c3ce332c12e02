"""``hwprune models``: the zoo with parameters and MACs."""
from __future__ import annotations

import argparse

from hwprune.cli._fmt import emit_json, human_count, table
from hwprune.cli._options import add_format

HELP = "list the model zoo with parameters and MACs"


def add_parser(sub) -> None:
    s = sub.add_parser("models", help=HELP, description=HELP + ".")
    add_format(s)
    s.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hwprune.models import ZOO
    from hwprune.pruning._cost import dense_params_macs

    rows = []
    for name, entry in ZOO.items():
        model = entry.factory().eval()
        params, macs = dense_params_macs(model, entry.input_shape)
        rows.append({"name": name, "input_shape": "x".join(map(str, entry.input_shape)),
                     "params": params, "macs": macs, "weights": entry.weights is not None,
                     "description": entry.description})
    if args.format == "json":
        emit_json(rows)
        return 0
    table([[r["name"], r["input_shape"], human_count(r["params"]), human_count(r["macs"]),
            r["description"]] for r in rows], ["model", "input", "params", "MACs", "description"])
    print("\nUser models: --model path/to/file.py:factory --input-shape 1x3x224x224 [--weights W.pt]")
    return 0
