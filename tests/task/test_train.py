"""evaluate / adaptive_bn / finetune / train on a tiny synthetic task (seconds on one core)."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hwprune.errors import ConfigError, DataError
from hwprune.task import (
    TensorLoader,
    adaptive_bn,
    distillation_loss,
    evaluate,
    finetune,
    train,
)

torch.set_num_threads(1)


def _dataset(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """4 classes of 1x8x8 images: a fixed class pattern plus noise; easy but not trivial."""
    patterns = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(99))
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (n,), generator=g)
    return patterns[labels] + 1.0 * torch.randn(n, 1, 8, 8, generator=g), labels


def _loader(n: int, seed: int, **kw) -> TensorLoader:
    x, y = _dataset(n, seed)
    return TensorLoader(x, y, batch_size=kw.pop("batch_size", 64), **kw)


def _net(width: int = 8) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
        nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(4 * width, 4))


@pytest.fixture(scope="module")
def trained() -> nn.Module:
    model = _net()
    train(model, _loader(1024, 1, shuffle=True), epochs=4, lr=0.05, progress=False)
    return model


class _Fixed(nn.Module):
    """Predicts ``inputs[:, 0]`` as the class: accuracy is known in advance."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.one_hot(x[:, 0].long(), 3).float()


# --------------------------------------------------------------------------- evaluate

def test_evaluate_known_accuracy_and_restores_mode() -> None:
    preds = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    labels = torch.tensor([0, 1, 2, 1, 1, 0, 0, 2, 2, 0])       # 7 of 10 right
    batches = [(preds[i:i + 3, None].float(), labels[i:i + 3]) for i in range(0, 10, 3)]
    model = _Fixed().train()
    assert evaluate(model, batches) == pytest.approx(0.7)
    assert model.training
    assert evaluate(model, batches, max_images=4) == pytest.approx(0.75)
    assert evaluate(model, batches, max_images=5) == pytest.approx(0.8)


def test_evaluate_empty_loader() -> None:
    with pytest.raises(DataError, match="no images"):
        evaluate(_Fixed(), [])


# --------------------------------------------------------------------------- adaptive BN

def test_adaptive_bn_sets_exact_batch_statistics() -> None:
    model = _net()
    x, y = _dataset(64, 5)
    momenta = [m.momentum for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    used = adaptive_bn(model, [(x, y)], num_images=64)
    assert used == 64 and not model.training
    bn1 = model[1]
    act = model[0](x)
    torch.testing.assert_close(bn1.running_mean, act.mean((0, 2, 3)))
    torch.testing.assert_close(bn1.running_var, act.var((0, 2, 3), unbiased=True))
    assert [m.momentum for m in model.modules() if isinstance(m, nn.BatchNorm2d)] == momenta


def test_adaptive_bn_stops_at_num_images_and_skips_models_without_bn() -> None:
    model = _net()
    loader = _loader(300, 6, batch_size=64)
    assert adaptive_bn(model, loader, num_images=100) == 100
    assert int(model[1].num_batches_tracked) == 2           # 64 + 36 images
    plain = nn.Sequential(nn.Flatten(), nn.Linear(64, 4)).train()
    assert adaptive_bn(plain, loader) == 0 and not plain.training
    with pytest.raises(ConfigError):
        adaptive_bn(model, loader, num_images=0)


def test_adaptive_bn_restores_accuracy_of_perturbed_model(trained: nn.Module) -> None:
    val = _loader(512, 2, batch_size=128)
    base = evaluate(trained, val)
    assert base > 0.9
    # What pruning does to a model: the weights feeding each BN change scale and the
    # inherited running stats no longer describe the activations.
    broken = copy.deepcopy(trained)
    with torch.no_grad():
        broken[0].weight.mul_(0.2)
        broken[3].weight.mul_(4.0)
        g = torch.Generator().manual_seed(0)
        for bn in (broken[1], broken[4]):
            bn.running_mean.uniform_(-1.0, 1.0, generator=g)
    before = [bn.running_var.clone() for bn in (broken[1], broken[4])]
    hurt = evaluate(broken, val)
    assert hurt < base - 0.2
    adaptive_bn(broken, _loader(1024, 1, batch_size=128), num_images=512)
    assert all(not torch.allclose(b, bn.running_var) for b, bn in zip(before, (broken[1], broken[4])))
    assert evaluate(broken, val) >= base - 0.02


# --------------------------------------------------------------------------- finetune / KD

def test_distillation_loss_limits() -> None:
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(8, 4, generator=g), torch.randn(8, 4, generator=g)
    y = torch.randint(0, 4, (8,), generator=g)
    ce = F.cross_entropy(s, y)
    torch.testing.assert_close(distillation_loss(s, t, y, kd_alpha=0.0), ce)
    torch.testing.assert_close(distillation_loss(s, s, y, kd_alpha=0.3), 0.7 * ce)
    assert distillation_loss(s, t, y, kd_alpha=1.0) > 0


def test_finetune_with_kd_reduces_loss_and_is_deterministic(trained: nn.Module) -> None:
    runs = []
    for _ in range(2):
        student = _net(width=4)
        rng_before = torch.get_rng_state()
        result = finetune(student, _loader(512, 3, shuffle=True), steps=40, lr=0.05,
                          teacher=trained, kd_alpha=0.7, temperature=4.0, progress=False)
        assert torch.equal(torch.get_rng_state(), rng_before)   # caller's RNG untouched
        runs.append((result, student))
    (r, student), (r2, _) = runs
    assert r.distilled and r.steps == 40 and len(r.losses) == 40
    assert r.final_loss < 0.6 * sum(r.losses[:4]) / 4
    assert r.losses == r2.losses
    assert not student.training
    assert evaluate(student, _loader(512, 2)) > 0.8


def test_finetune_rejects_bad_arguments(trained: nn.Module) -> None:
    loader = _loader(64, 3)
    with pytest.raises(ConfigError, match="steps must be positive"):
        finetune(_net(), loader, steps=0)
    with pytest.raises(ConfigError, match="kd_alpha"):
        finetune(_net(), loader, steps=1, teacher=trained, kd_alpha=1.5)
    with pytest.raises(ConfigError, match="unknown optimizer 'lion'; known: sgd, adam"):
        finetune(_net(), loader, steps=1, optimizer="lion")
    with pytest.raises(DataError, match="no batches"):
        finetune(_net(), [], steps=1)


# --------------------------------------------------------------------------- train

def test_train_history_and_accuracy(trained: nn.Module) -> None:
    model = _net()
    hist = train(model, _loader(1024, 1, shuffle=True), epochs=3, lr=0.05,
                 optimizer="adam", schedule="cosine", val_loader=_loader(256, 2),
                 progress=False)
    assert hist.epochs == 3 and len(hist.train_loss) == len(hist.val_accuracy) == 3
    assert hist.train_loss[-1] < hist.train_loss[0]
    assert hist.val_accuracy[-1] > 0.85
    assert not model.training
    with pytest.raises(ConfigError, match="epochs must be positive"):
        train(model, _loader(64, 1), epochs=0)
    with pytest.raises(ConfigError, match="steps_per_epoch"):
        train(model, iter([]), epochs=1)
