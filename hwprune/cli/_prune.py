"""``hwprune prune``: apply a plan or a uniform ratio and write the smaller model."""
from __future__ import annotations

import argparse
from pathlib import Path

from hwprune.cli._fmt import emit_json, human_bytes, human_count, table
from hwprune.cli._options import add_format, add_model, check_output_dir, float_in, load_model
from hwprune.errors import ConfigError

HELP = "prune a model with a plan or a uniform ratio"


def add_parser(sub) -> None:
    s = sub.add_parser("prune", help=HELP,
                       description="Write the pruned model (.pt and .onnx) and its plan, and print "
                                   "parameters, MACs and memory before and after.",
                       epilog="example: hwprune prune --model resnet18 --ratio 0.3 --out pruned/",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model(s)
    s.add_argument("--plan", help="a plan.json (from hwprune search or an earlier prune)")
    s.add_argument("--ratio", type=float_in(0.0, 1.0), help="prune every group by this fraction, in [0, 1)")
    s.add_argument("--out", required=True, help="output folder")
    add_format(s)
    s.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from hwprune.onnx_export import check_onnx, export_onnx
    from hwprune.pruning import PruningPlan, analyze

    if (args.plan is None) == (args.ratio is None):
        raise ConfigError("give exactly one of --plan FILE or --ratio R")
    check_output_dir(args.out, "--out")
    lm = load_model(args)
    analysis = analyze(lm)
    space = analysis.space
    plan = PruningPlan.load(args.plan) if args.plan else space.uniform_plan(args.ratio)
    space.validate(plan)
    pruned = space.apply(plan)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plan.save(out / "plan.json")
    torch.save(pruned, out / "model.pt")
    torch.save(pruned.state_dict(), out / "model_state_dict.pt")
    export_onnx(pruned, lm.input_shape, out / "model.onnx")
    diff = check_onnx(pruned, out / "model.onnx", lm.input_shape)
    before, after = analysis.cost.cost(space.dense_plan()), analysis.cost.cost(plan)
    result = {"model": lm.model_id, "out": str(out), "onnx_check_rel_diff": diff,
              "before": before.to_dict(), "after": after.to_dict(),
              "groups": {g.name: {"dense": g.size, "keep": space.full_keep(plan)[g.name]}
                         for g in space.groups}}
    if args.format == "json":
        emit_json(result)
        return 0
    rows = []
    for label, key, f in (("parameters", "params", human_count), ("MACs", "macs", human_count),
                          ("weights", "weight_bytes", human_bytes),
                          ("peak activations", "peak_activation_bytes", human_bytes),
                          ("memory (weights + activations)", "memory_bytes", human_bytes)):
        b, a = result["before"][key], result["after"][key]
        rows.append([label, f(b), f(a), f"{a / b:.1%}" if b else "-"])
    table(rows, ["", "before", "after", "after/before"])
    print(f"\nwrote {out}/plan.json, model.pt (whole module), model_state_dict.pt, model.onnx "
          f"(onnxruntime matches torch: rel. diff {diff:.1e})")
    return 0
