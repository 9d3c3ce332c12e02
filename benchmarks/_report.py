"""What the benchmark scripts share: their summaries as Markdown tables, the machine line,
the table each profiles into when a model is missing."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import pandas as pd

from hwprune.devices import LocalRunner
from hwprune.latency import LatencyTable, profile_model
from hwprune.runtimes.timing import TimingProtocol


def machine_line(runtime, threads: int) -> str:
    """'Machine: CPU; RUNTIME VERSION, N thread(s). Date: YYYY-MM-DD.' for a summary."""
    facts = runtime.facts()
    return (f"Machine: {facts.get('cpu')}; {facts.get('runtime')} {facts.get('runtime_version')}, {threads} "
            f"thread(s). Date: {time.strftime('%Y-%m-%d')}.")


def md_table(df: pd.DataFrame) -> str:
    """``df`` as a Markdown table, floats to 3 decimals."""
    def cell(v):
        return f"{v:.3f}" if isinstance(v, float) else str(v)
    head = "| " + " | ".join(df.columns) + " |"
    sep = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, sep, *body])


def ensure_profiled(analysis, device: str, directory: Path, runtime) -> dict | None:
    """Profile the model into the table unless it is there and measured on this machine."""
    table = LatencyTable.load(directory, device, create=True)
    fresh = table.meta.measured_on and all(table.meta.measured_on.get(k) == v
                                           for k, v in runtime.identity().items() if k in ("cpu", "runtime"))
    if analysis.model_key in table.meta.models and fresh:
        return None
    start = time.perf_counter()
    with LocalRunner(runtime, protocol=TimingProtocol(warmup=10, repeats=50, min_time_s=0.1)) as runner:
        rep = profile_model(analysis, table, runner, progress=sys.stderr.isatty())
    return {"model": analysis.lm.model_id, "build_s": round(time.perf_counter() - start, 1), "timed": rep.timed,
            "reused": rep.reused, "interpolated": rep.interpolated, "calibration_points": rep.calibration_points}
