"""What the benchmark scripts share: their summaries as Markdown tables."""
from __future__ import annotations

import pandas as pd


def md_table(df: pd.DataFrame) -> str:
    """``df`` as a Markdown table, floats to 3 decimals."""
    def cell(v):
        return f"{v:.3f}" if isinstance(v, float) else str(v)
    head = "| " + " | ".join(df.columns) + " |"
    sep = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, sep, *body])
