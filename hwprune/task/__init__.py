"""Task: the data a pruned model is trained and scored on, training, and the fine-tune recipe.

* the data contract: :class:`TaskData` (train / val / test loaders of ``(inputs, labels)``
  batches), the built-in Fashion-MNIST task (:func:`load_fashion_mnist`), user task
  modules (:func:`load_user_task`) and the task a model is searched on (:func:`load_task`);
* training and scoring: :func:`evaluate`, :func:`adaptive_bn`, :func:`finetune`,
  :func:`train`, :func:`distillation_loss`;
* the one fine-tune recipe of pruned models: :class:`FinetuneRecipe` and
  :func:`finetune_kd` (knowledge distillation from the dense model).

``python -m hwprune.task.train_demo`` trains the demo CNN's shipped weights.

>>> from hwprune.task import FinetuneRecipe, finetune_kd, load_fashion_mnist
>>> task = load_fashion_mnist()                                          # doctest: +SKIP
>>> finetune_kd(pruned, dense, task, FinetuneRecipe(steps=300))          # doctest: +SKIP
"""
from __future__ import annotations

from hwprune.task._data import (FASHION_MNIST_DIR, TaskData, TensorLoader, load_fashion_mnist,
                                load_task, load_user_task)
from hwprune.task._finetune import FinetuneRecipe, finetune_kd
from hwprune.task._train import (FinetuneResult, TrainResult, adaptive_bn, distillation_loss,
                                 evaluate, finetune, train)

__all__ = [
    "FASHION_MNIST_DIR",
    "FinetuneRecipe",
    "FinetuneResult",
    "TaskData",
    "TensorLoader",
    "TrainResult",
    "adaptive_bn",
    "distillation_loss",
    "evaluate",
    "finetune",
    "finetune_kd",
    "load_fashion_mnist",
    "load_task",
    "load_user_task",
    "train",
]
