"""Progress bars of the table builder (stderr, off when not wanted or nothing to do)."""
from __future__ import annotations

import sys

__all__ = ["progress_bar"]


def progress_bar(total: int, desc: str, enabled: bool, unit: str = "kernel"):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled or total == 0,
                file=sys.stderr, dynamic_ncols=True)
