"""One model, analysed once: its pruning space, analytic cost and kernel templates."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from hwprune.models import LoadedModel
from hwprune.pruning import PruningSpace
from hwprune.pruning._cost import CostModel

__all__ = ["Analysis", "analyze"]


@dataclass
class Analysis:
    lm: LoadedModel
    space: PruningSpace
    cost: CostModel

    @cached_property
    def templates(self):
        from hwprune.latency._extract import kernel_templates

        return kernel_templates(self.cost.onnx_models, self.cost.solve)

    @property
    def model_key(self) -> str:
        return f"{self.lm.model_id}@{'x'.join(map(str, self.lm.input_shape))}"


def analyze(lm: LoadedModel, multiple: int = 8, min_keep: float = 0.1) -> Analysis:
    space = PruningSpace(lm, multiple=multiple, min_keep=min_keep)
    return Analysis(lm, space, CostModel(space))
