"""``hwprune prune``: apply a plan or a uniform ratio and write the smaller model."""
from __future__ import annotations

import argparse
from pathlib import Path

from hwprune._io import atomic_write_with
from hwprune.cli._fmt import emit_json, human_bytes, human_count, table
from hwprune.cli._options import add_format, add_keep_layers, add_model, check_output_dir, float_in, load_model
from hwprune.errors import ConfigError

HELP = "prune a model with a plan or a uniform ratio"


def add_parser(sub) -> None:
    s = sub.add_parser("prune", help=HELP,
                       description="Write the pruned model (state_dict, ONNX and a standalone "
                                   "torch.export program) and its plan, and print parameters, MACs "
                                   "and memory before and after. Nothing of your model's classes is "
                                   "pickled: rebuild the module with "
                                   "hwprune.pruning.rebuild_pruned(MODEL, 'OUT/plan.json', "
                                   "'OUT/model_state_dict.pt').",
                       epilog="example: hwprune prune --model resnet18 --ratio 0.3 --out pruned/",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model(s)
    add_keep_layers(s)
    s.add_argument("--plan", help="a plan.json (from hwprune search or an earlier prune)")
    s.add_argument("--ratio", type=float_in(0.0, 1.0), help="prune every group by this fraction, in [0, 1)")
    s.add_argument("--out", required=True, help="output folder")
    add_format(s)
    s.set_defaults(func=run)


def _standalone_program(pruned, input_shape, out: Path) -> tuple[str | None, str | None]:
    """``model.pt2`` (torch.export) or else ``model.ts`` (TorchScript): a file that runs
    without the model's Python code. Returns (file name, why none) - a model that neither
    can capture still gets its state_dict and ONNX."""
    import torch

    x = torch.zeros(*input_shape)
    reasons = []
    try:
        program = torch.export.export(pruned, (x,))
        tmp = out / "model.tmp.pt2"
        torch.export.save(program, tmp)
        tmp.replace(out / "model.pt2")
        return "model.pt2", None
    except Exception as exc:  # the model's code decides what torch.export can capture
        reasons.append(f"torch.export: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    try:
        with torch.no_grad():
            traced = torch.jit.trace(pruned, (x,), check_trace=False)
        tmp = out / "model.tmp.ts"
        torch.jit.save(traced, str(tmp))
        tmp.replace(out / "model.ts")
        return "model.ts", None
    except Exception as exc:
        reasons.append(f"TorchScript: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    return None, "; ".join(reasons)


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
    # a state_dict holds tensors only: torch.save of the module would pickle the user's class
    atomic_write_with(out / "model_state_dict.pt", lambda tmp: torch.save(pruned.state_dict(), tmp))
    export_onnx(pruned, lm.input_shape, out / "model.onnx")
    diff = check_onnx(pruned, out / "model.onnx", lm.input_shape)
    program, no_program = _standalone_program(pruned, lm.input_shape, out)
    files = ["plan.json", "model_state_dict.pt", "model.onnx"] + ([program] if program else [])
    for stale in {"model.pt2", "model.ts"} - set(files):  # an earlier run's program is not this model
        (out / stale).unlink(missing_ok=True)
    before, after = analysis.cost.cost(space.dense_plan()), analysis.cost.cost(plan)
    rebuild = (f"hwprune.pruning.rebuild_pruned({lm.spec!r}, {str(out / 'plan.json')!r}, "
               f"{str(out / 'model_state_dict.pt')!r})")
    result = {"model": lm.model_id, "out": str(out), "files": files, "onnx_check_rel_diff": diff,
              "standalone_program": program, "standalone_program_error": no_program, "rebuild": rebuild,
              "keep_layers": list(space.keep_layers), "kept_whole": space.auto_pinned,
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
    for name, why in space.auto_pinned.items():
        print(f"note: layer '{name}' kept whole: {why}")
    print(f"\nwrote {out}/: plan.json, model_state_dict.pt (weights only), model.onnx "
          f"(onnxruntime matches torch: rel. diff {diff:.1e})"
          + (f", {program} (runs without your model's code: "
             + ("torch.export.load(path).module()" if program == "model.pt2" else "torch.jit.load(path)") + ")"
             if program else f"; no standalone program ({no_program})"))
    print(f"rebuild the module: {rebuild}")
    return 0
