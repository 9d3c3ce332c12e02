"""The one fine-tune recipe: knowledge distillation from the dense model.

Every pruned model hwprune fine-tunes - a candidate scored during the search, each
finalist, the winner, and every method of ``benchmarks/search_quality.py`` - goes
through :func:`finetune_kd` with a :class:`FinetuneRecipe`, so "fine-tuned identically"
means the same code, the same hyper-parameters and the same batches.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Iterable

from torch import nn

from hwprune.errors import ConfigError
from hwprune.task._data import TaskData, TensorLoader
from hwprune.task._train import FinetuneResult, finetune

__all__ = ["FinetuneRecipe", "finetune_kd"]


@dataclass(frozen=True)
class FinetuneRecipe:
    """How a pruned student is distilled from the dense teacher.

    Loss ``(1 - kd_alpha) * CE + kd_alpha * T^2 * KL`` at temperature ``temperature``
    (:func:`~hwprune.task.distillation_loss`); ``steps`` optimizer steps of ``optimizer``
    with a ``schedule`` learning rate from ``lr``; the training batches replay from the
    loader's seed (see :func:`finetune_kd`), and ``seed`` fixes the rest of the RNG.

    >>> FinetuneRecipe(steps=300, lr=0.01).with_steps(25).steps
    25
    """

    steps: int
    lr: float = 0.01
    kd_alpha: float = 0.5
    temperature: float = 4.0
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 5e-5
    schedule: str = "cosine"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ConfigError(f"fine-tuning steps must be zero or positive, got {self.steps}")

    def with_steps(self, steps: int) -> "FinetuneRecipe":
        """The same recipe for another number of steps."""
        return replace(self, steps=steps)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _replayed(loader: Iterable[Any]) -> Iterable[Any]:
    """A :class:`TensorLoader` restarted at its seed; other loaders pass through (they
    shuffle, or not, as their owner made them)."""
    return loader.restarted() if isinstance(loader, TensorLoader) else loader


def finetune_kd(student: nn.Module, teacher: nn.Module, data: TaskData, recipe: FinetuneRecipe,
                *, progress: bool = False) -> FinetuneResult:
    """Distil ``teacher`` into ``student`` on ``data.train`` following ``recipe``.

    The training loader is replayed from its seed for every call, so every model
    fine-tuned with one recipe sees the same batches in the same order, whatever ran
    before (scores then differ by the pruning, not by the sample). ``student`` is left
    in eval mode, ``teacher`` in the mode it had. ``recipe.steps`` must be positive.

    >>> r = finetune_kd(pruned, dense, task, FinetuneRecipe(steps=300))   # doctest: +SKIP
    >>> r.final_loss < r.losses[0]
    True
    """
    if teacher is None:
        raise ConfigError("distillation needs a teacher (the dense model)")
    return finetune(student, _replayed(data.train), recipe.steps, recipe.lr, teacher=teacher,
                    kd_alpha=recipe.kd_alpha, temperature=recipe.temperature,
                    optimizer=recipe.optimizer, momentum=recipe.momentum,
                    weight_decay=recipe.weight_decay, schedule=recipe.schedule, seed=recipe.seed,
                    progress=progress)
