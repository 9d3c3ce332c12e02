"""One model, analysed once: its pruning space, analytic cost and kernel templates."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Sequence

from hwprune.models import LoadedModel
from hwprune.pruning._cost import CostModel
from hwprune.pruning._space import NeedsPins, PruningSpace

__all__ = ["Analysis", "analyze"]


@dataclass
class Analysis:
    lm: LoadedModel
    space: PruningSpace
    cost: CostModel
    #: the runtime whose fusions define the kernels (default: onnxruntime's CPU provider)
    runtime: Any = field(default=None, repr=False)

    @cached_property
    def templates(self):
        """The model's kernels as the runtime runs them, with plan-dependent channels."""
        from hwprune.pruning._templates import kernel_templates

        if self.runtime is None:
            from hwprune.runtimes.ort import OrtRuntime

            self.runtime = OrtRuntime()
        return kernel_templates(self.cost.onnx_models, self.cost.solve, self.runtime.kernels)

    @property
    def model_key(self) -> str:
        return f"{self.lm.model_id}@{'x'.join(map(str, self.lm.input_shape))}"


def analyze(lm: LoadedModel, multiple: int = 8, min_keep: float = 0.1, runtime: Any = None,
            keep_layers: Sequence[str] | None = None) -> Analysis:
    """The pruning space, cost model and (lazily) kernel templates of ``lm``.

    ``keep_layers`` (default: ``lm.keep_layers``) are pinned: not pruned. Layers whose
    channels Torch-Pruning cannot follow (a channel shuffle permutes them) are pinned too,
    and listed in ``analysis.space.auto_pinned`` with the reason; groups whose channels
    reach a layer twice (GhostNet: a residual add over ``cat([y, cheap(y)])``) are pruned
    in tied sets (``analysis.space.ties``).
    """
    auto: dict[str, str] = {}
    tied: list[str] = []
    while True:
        space = PruningSpace(lm, multiple=multiple, min_keep=min_keep, keep_layers=keep_layers, auto_pinned=auto,
                             tied=tied)
        try:
            return Analysis(lm, space, CostModel(space), runtime)
        except NeedsPins as exc:
            if set(exc.pins) <= set(auto) and set(exc.ties) <= set(tied):  # pragma: no cover
                raise
            auto.update(exc.pins)
            tied += [t for t in exc.ties if t not in tied]
