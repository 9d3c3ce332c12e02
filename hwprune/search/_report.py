"""The run's report: the per-model facts of ``summary.json`` and ``summary.md``."""
from __future__ import annotations

from typing import Any

from hwprune.rundir import RunSummary
from hwprune.search._budget import format_bytes

__all__ = ["model_facts", "summary_markdown"]


def model_facts(cost: Any, predicted_ms: float,
                measured: dict | None, val: float | None, test: float | None) -> dict[str, Any]:
    """One column of the dense-vs-pruned comparison: accuracy, latency, size, memory."""
    return {"accuracy": {"val": val, "test": test},
            "predicted_ms": predicted_ms,
            "measured_ms": measured["median_ms"] if measured else None,
            "measured": measured,
            "params": cost.params, "macs": cost.macs, "weight_bytes": cost.weight_bytes,
            "peak_activation_bytes": cost.peak_activation_bytes,
            "memory_bytes": cost.memory_bytes}


def _fmt(v: Any, spec: str = ".4f") -> str:
    return "-" if v is None else format(v, spec)


def _winner_text(s: dict[str, Any]) -> str:
    trial = s["search"]["best_trial"]
    if s["search"].get("finalists"):
        label = next(r["finalist"] for r in s["search"]["finalists"] if r.get("chosen"))
        return f"the best of {len(s['search']['finalists'])} finalists ({label})"
    return f"trial {trial}"


def summary_markdown(summary: RunSummary) -> str:
    """``summary.md``: the summary of a finished run as a page for people."""
    s = summary.to_dict()
    d, p = s["dense"], s["pruned"]
    b = s["budget"]
    lines = [
        f"# hwprune search: {s['model']['model_id']} on {s['device']}",
        "",
        f"Budget: {s['budget_text']}. Latency table: {s['table_kind']} "
        f"(calibration: {s['calibration_scope']}).",
        "",
        "| | dense | pruned |",
        "|---|---:|---:|",
        f"| val accuracy | {_fmt(d['accuracy']['val'])} | {_fmt(p['accuracy']['val'])} |",
        f"| test accuracy | {_fmt(d['accuracy']['test'])} | {_fmt(p['accuracy']['test'])} |",
        f"| predicted latency (ms) | {_fmt(d['predicted_ms'], '.4g')} | {_fmt(p['predicted_ms'], '.4g')} |",
        f"| measured latency (ms, {(p.get('measured') or {}).get('runtime', 'not measured')}) | {_fmt(d['measured_ms'], '.4g')} | "
        f"{_fmt(p['measured_ms'], '.4g')} |",
        f"| params | {d['params']:,} | {p['params']:,} |",
        f"| MACs | {d['macs']:,} | {p['macs']:,} |",
        f"| memory (weights + peak activations) | {format_bytes(d['memory_bytes'])} | "
        f"{format_bytes(p['memory_bytes'])} |",
        "",
        f"Search: {s['search']['evaluated']} candidates evaluated of {s['search']['proposed_total']} "
        f"proposed ({s['search']['infeasible']} over budget, not evaluated), sampler "
        f"{s['search']['sampler']}, seed {s['search']['seed']}, {s['search']['wall_s']:.0f} s. "
        f"Winner: {_winner_text(s)}, fine-tuned {s['finetune']['steps']} steps "
        f"with the dense model as teacher ({s['finetune']['wall_s']:.0f} s in all).",
        "",
        "Kept channels per group:",
        "",
        "| group | kept | of |",
        "|---|---:|---:|",
    ]
    for g, k in s["plan_keep"].items():
        lines.append(f"| {g} | {k} | {s['plan_dense'][g]} |")
    if s["search"].get("finalists"):
        lines += ["", "Finalists (each fine-tuned identically; the best on validation won):", "",
                  "| finalist | val accuracy | chosen |", "|---|---:|:---:|"]
        for r in s["search"]["finalists"]:
            lines.append(f"| {r['finalist']} | {r['val_accuracy']:.4f} | {'yes' if r.get('chosen') else ''} |")
    if b.get("latency_ms") is not None and p["measured_ms"] is not None:
        lines += ["", f"Measured latency is {p['measured_ms'] / b['latency_ms']:.0%} of the latency budget."]
    for w in s["warnings"]:
        lines += ["", f"**Warning:** {w}"]
    for n in s["notes"]:
        lines += ["", f"Note: {n}"]
    return "\n".join(lines) + "\n"
