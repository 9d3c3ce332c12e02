"""What the benchmark scripts share: their summaries as Markdown tables, the machine line."""
from __future__ import annotations

import time

import pandas as pd


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
