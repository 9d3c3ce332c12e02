"""The one fine-tune recipe: every model distilled with it sees the same batches."""
from __future__ import annotations

import copy

import pytest
import torch

from hwprune.errors import ConfigError
from hwprune.task import FinetuneRecipe, TaskData, finetune_kd

from tests.task.test_train import _loader, _net

torch.set_num_threads(1)


def _task() -> TaskData:
    return TaskData("synthetic", _loader(512, 1, shuffle=True, augment=False), _loader(128, 2))


def test_recipe_replays_the_same_batches_whatever_ran_before() -> None:
    task, teacher = _task(), _net()
    recipe = FinetuneRecipe(steps=6, lr=0.05, seed=3)
    a, b = _net(width=4), _net(width=4)
    ra = finetune_kd(a, teacher, task, recipe)
    for _ in task.train:       # draw two epochs: the shared loader's generator moves on
        pass
    for _ in task.train:
        pass
    rb = finetune_kd(b, teacher, task, recipe)
    assert ra.losses == rb.losses and ra.distilled and ra.steps == 6
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    # the loader itself did move on: plain iteration gives another order than a restart
    first_now = next(iter(task.train))[1]
    first_restarted = next(iter(task.train.restarted()))[1]
    assert not torch.equal(first_now, first_restarted)


def test_recipe_settings_reach_the_optimizer() -> None:
    task, teacher = _task(), _net()
    base = _net(width=4)
    plain = copy.deepcopy(base)
    finetune_kd(plain, teacher, task, FinetuneRecipe(steps=4, lr=0.05))
    hard = copy.deepcopy(base)
    finetune_kd(hard, teacher, task, FinetuneRecipe(steps=4, lr=0.05, kd_alpha=0.0))
    assert any(not torch.equal(p, q) for p, q in zip(plain.parameters(), hard.parameters()))
    assert FinetuneRecipe(steps=300).with_steps(25) == FinetuneRecipe(steps=25)
    assert FinetuneRecipe(steps=5, lr=0.1).to_dict()["lr"] == 0.1


def test_recipe_rejects_bad_values() -> None:
    with pytest.raises(ConfigError, match="zero or positive"):
        FinetuneRecipe(steps=-1)
    with pytest.raises(ConfigError, match="teacher"):
        finetune_kd(_net(), None, _task(), FinetuneRecipe(steps=2))
    with pytest.raises(ConfigError, match="positive"):
        finetune_kd(_net(), _net(), _task(), FinetuneRecipe(steps=0))
