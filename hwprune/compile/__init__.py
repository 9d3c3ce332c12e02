"""Compile a pruned model with Apache TVM and export a deployable artifact.

``tvm`` is imported lazily (only ``hwprune.runtimes.tvm`` imports it), so importing this
package is cheap and works without TVM installed.

>>> from hwprune.compile import export_artifact
>>> meta = export_artifact("runs/demo-host", device="host", out_dir="artifacts/demo-host")  # doctest: +SKIP
"""
from __future__ import annotations

from hwprune.compile._export import SLOWER_THAN_PREDICTED, SlowerThanPredictedError, export_artifact

__all__ = ["export_artifact", "SLOWER_THAN_PREDICTED", "SlowerThanPredictedError"]
