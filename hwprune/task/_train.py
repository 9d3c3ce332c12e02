"""Training and scoring utilities the search uses on (pruned) models.

* :func:`evaluate` - top-1 accuracy on a loader;
* :func:`adaptive_bn` - EagleEye's BatchNorm recalibration, the cheap step that makes
  a freshly pruned model's accuracy a usable ranking signal (Li et al., ECCV 2020);
* :func:`finetune` - a fixed number of steps, optionally distilled from the dense
  teacher (Hinton et al., 2015);
* :func:`train` - whole epochs from scratch (the demo weights are made with it).

All take any re-iterable of ``(inputs, labels)`` batches and move batches to the
model's device. Runs are deterministic for a given ``seed`` on one machine and
thread count: the seed is applied inside ``torch.random.fork_rng`` so the caller's
global RNG state is left untouched. Progress bars (tqdm, on stderr) show only when
``progress`` is true and stderr is a terminal.
"""
from __future__ import annotations

import itertools
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from hwprune.errors import ConfigError, DataError

__all__ = [
    "FinetuneResult",
    "TrainResult",
    "adaptive_bn",
    "distillation_loss",
    "evaluate",
    "finetune",
    "train",
]

Batch = tuple[torch.Tensor, torch.Tensor]
_OPTIMIZERS = ("sgd", "adam", "adamw")
_SCHEDULES = ("onecycle", "cosine", "constant")


def _show(progress: bool) -> bool:
    return bool(progress) and sys.stderr.isatty()


def _device(model: nn.Module) -> torch.device:
    for p in itertools.chain(model.parameters(), model.buffers()):
        return p.device
    return torch.device("cpu")


def _cycle(loader: Iterable[Batch]) -> Iterator[Batch]:
    """Endless batches: a new pass over ``loader`` (a new epoch) whenever one ends."""
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise DataError("the training loader yielded no batches")


def _make_optimizer(params: Iterable[nn.Parameter], name: str, lr: float, momentum: float,
                    weight_decay: float) -> torch.optim.Optimizer:
    if lr <= 0:
        raise ConfigError(f"learning rate must be positive, got {lr}")
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay,
                               nesterov=momentum > 0)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise ConfigError(f"unknown optimizer '{name}'; known: {', '.join(_OPTIMIZERS)}")


def _make_schedule(opt: torch.optim.Optimizer, name: str, lr: float,
                   total_steps: int) -> torch.optim.lr_scheduler.LRScheduler | None:
    if name == "onecycle":
        # pct_start 0.25: short warm-up; fine for the few-epoch runs this package does.
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total_steps,
                                                   pct_start=0.25)
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps)
    if name == "constant":
        return None
    raise ConfigError(f"unknown learning-rate schedule '{name}'; known: {', '.join(_SCHEDULES)}")


# --------------------------------------------------------------------------- scoring

@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable[Batch], *, max_images: int | None = None,
             progress: bool = False) -> float:
    """Top-1 accuracy of ``model`` on ``loader`` as a fraction in [0, 1].

    Runs in eval mode without gradients and restores the model's previous mode.
    ``max_images`` stops early (the first images in loader order), for cheap
    scoring during a search.

    >>> evaluate(model, task.val)    # doctest: +SKIP
    0.9312
    """
    was_training = model.training
    model.eval()
    device = _device(model)
    correct = seen = 0
    try:
        for x, y in tqdm(loader, desc="evaluate", leave=False, disable=not _show(progress)):
            if max_images is not None:
                x, y = x[:max_images - seen], y[:max_images - seen]
            pred = model(x.to(device)).argmax(1)
            correct += int((pred == y.to(device)).sum())
            seen += len(y)
            if max_images is not None and seen >= max_images:
                break
    finally:
        model.train(was_training)
    if seen == 0:
        raise DataError("cannot evaluate: the loader yielded no images")
    return correct / seen


@torch.no_grad()
def adaptive_bn(model: nn.Module, loader: Iterable[Batch], num_images: int = 512, *,
                progress: bool = False) -> int:
    """Recalibrate BatchNorm running statistics on ``num_images`` training images.

    Pruning channels changes the statistics every following BatchNorm sees, so the
    inherited running mean/var are stale and accuracy collapses until they are
    re-estimated. As in EagleEye, the running stats are reset and re-accumulated as
    a cumulative average (``momentum=None``) over a few hundred images in train mode,
    with no weight update. Afterwards each layer's momentum is restored and the model
    is left in **eval** mode. Returns the number of images used (0 when the model
    has no BatchNorm that tracks running stats).

    Pass a fixed set of batches (``TaskData.calibration_batches``) when comparing
    candidates so they all see the same images.
    """
    if num_images <= 0:
        raise ConfigError(f"adaptive BN needs a positive number of images, got {num_images}")
    bns = [m for m in model.modules()
           if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not bns:
        model.eval()
        return 0
    momenta = [bn.momentum for bn in bns]
    device = _device(model)
    seen = 0
    try:
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None
        model.train()
        with tqdm(total=num_images, desc="adaptive BN", leave=False,
                  disable=not _show(progress)) as bar:
            for x, _ in loader:
                x = x[:num_images - seen]
                if len(x) == 0:
                    continue
                model(x.to(device))
                seen += len(x)
                bar.update(len(x))
                if seen >= num_images:
                    break
    finally:
        for bn, m in zip(bns, momenta):
            bn.momentum = m
        model.eval()
    if seen == 0:
        raise DataError("adaptive BN: the loader yielded no images")
    return seen


# --------------------------------------------------------------------------- training

def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                      labels: torch.Tensor, kd_alpha: float = 0.5,
                      temperature: float = 4.0) -> torch.Tensor:
    """``(1 - a) * CE(student, labels) + a * T^2 * KL(teacher_T || student_T)``.

    The ``T^2`` factor keeps the soft-target gradients on the scale of the hard
    ones when the temperature changes (Hinton et al., 2015).
    """
    hard = F.cross_entropy(student_logits, labels)
    if kd_alpha == 0:
        return hard
    t = temperature
    soft = F.kl_div(F.log_softmax(student_logits / t, dim=1),
                    F.log_softmax(teacher_logits / t, dim=1),
                    reduction="batchmean", log_target=True) * (t * t)
    return (1 - kd_alpha) * hard + kd_alpha * soft


@dataclass
class FinetuneResult:
    """What :func:`finetune` did: per-step training loss and the time it took."""

    steps: int
    losses: list[float]
    wall_s: float
    distilled: bool

    @property
    def final_loss(self) -> float:
        """Mean loss of the last tenth of the steps (at least one)."""
        k = max(1, len(self.losses) // 10)
        return sum(self.losses[-k:]) / k


def finetune(student: nn.Module, loader: Iterable[Batch], steps: int, lr: float = 0.01,
             teacher: nn.Module | None = None, kd_alpha: float = 0.5,
             temperature: float = 4.0, *, optimizer: str = "sgd", momentum: float = 0.9,
             weight_decay: float = 5e-5, schedule: str = "cosine", seed: int = 0,
             progress: bool = True) -> FinetuneResult:
    """Fine-tune ``student`` for ``steps`` optimizer steps on ``loader``.

    The loader is cycled, so ``steps`` may exceed one epoch. With a ``teacher`` (the
    dense model, frozen and in eval mode) the loss is :func:`distillation_loss` with
    ``kd_alpha`` and ``temperature``; without one, plain cross-entropy. The learning
    rate follows ``schedule`` ("cosine" to zero, "onecycle" or "constant"). The
    student is left in eval mode.

    >>> r = finetune(pruned, task.train, steps=300, lr=0.01, teacher=dense)  # doctest: +SKIP
    >>> r.final_loss < r.losses[0]
    True
    """
    if steps <= 0:
        raise ConfigError(f"fine-tuning steps must be positive, got {steps}")
    if not 0 <= kd_alpha <= 1:
        raise ConfigError(f"kd_alpha must be in [0, 1], got {kd_alpha}")
    if temperature <= 0:
        raise ConfigError(f"distillation temperature must be positive, got {temperature}")
    device = _device(student)
    teacher_was_training = teacher.training if teacher is not None else False
    losses: list[float] = []
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        opt = _make_optimizer(student.parameters(), optimizer, lr, momentum, weight_decay)
        sched = _make_schedule(opt, schedule, lr, steps)
        student.train()
        if teacher is not None:
            teacher.eval()
        batches = _cycle(loader)
        try:
            for _ in tqdm(range(steps), desc="finetune", leave=False, disable=not _show(progress)):
                x, y = next(batches)
                x, y = x.to(device), y.to(device)
                logits = student(x)
                if teacher is not None:
                    with torch.no_grad():
                        t_logits = teacher(x)
                    loss = distillation_loss(logits, t_logits, y, kd_alpha, temperature)
                else:
                    loss = F.cross_entropy(logits, y)
                if not torch.isfinite(loss):
                    raise ConfigError(f"fine-tuning diverged at step {len(losses)} "
                                      f"(loss {loss.item()})", f"lower the learning rate, got {lr}")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if sched is not None:
                    sched.step()
                losses.append(loss.item())
        finally:
            student.eval()
            if teacher is not None:
                teacher.train(teacher_was_training)
    return FinetuneResult(steps, losses, time.perf_counter() - start, teacher is not None)


@dataclass
class TrainResult:
    """Per-epoch history of :func:`train`; ``val_accuracy`` is empty without a val loader."""

    epochs: int
    train_loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    epoch_s: list[float] = field(default_factory=list)
    wall_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"epochs": self.epochs, "train_loss": self.train_loss,
                "train_accuracy": self.train_accuracy, "val_accuracy": self.val_accuracy,
                "epoch_s": self.epoch_s, "wall_s": self.wall_s}


def train(model: nn.Module, loader: Iterable[Batch], epochs: int, *, lr: float = 0.1,
          optimizer: str = "sgd", momentum: float = 0.9, weight_decay: float = 5e-4,
          schedule: str = "onecycle", label_smoothing: float = 0.0,
          steps_per_epoch: int | None = None, val_loader: Iterable[Batch] | None = None,
          seed: int = 0, progress: bool = True, log: Any = None) -> TrainResult:
    """Train ``model`` for ``epochs`` passes over ``loader``; the LR is scheduled per step.

    ``steps_per_epoch`` defaults to ``len(loader)`` and is needed only for loaders
    without a length. With ``val_loader``, accuracy is measured after each epoch.
    ``log`` is a callable given one line per epoch (e.g. ``print``). The model is
    left in eval mode.

    >>> hist = train(demo_cnn(), task.train, epochs=5, val_loader=task.val)  # doctest: +SKIP
    """
    if epochs <= 0:
        raise ConfigError(f"epochs must be positive, got {epochs}")
    if steps_per_epoch is None:
        try:
            steps_per_epoch = len(loader)  # type: ignore[arg-type]
        except TypeError:
            raise ConfigError("the training loader has no len()",
                              "pass steps_per_epoch to train()") from None
    if steps_per_epoch <= 0:
        raise DataError("the training loader is empty")
    device = _device(model)
    result = TrainResult(epochs)
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        opt = _make_optimizer(model.parameters(), optimizer, lr, momentum, weight_decay)
        sched = _make_schedule(opt, schedule, lr, epochs * steps_per_epoch)
        batches = _cycle(loader)
        try:
            for epoch in range(epochs):
                t0 = time.perf_counter()
                model.train()
                loss_sum = 0.0
                correct = seen = 0
                bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{epochs}",
                           leave=False, disable=not _show(progress))
                for _ in bar:
                    x, y = next(batches)
                    x, y = x.to(device), y.to(device)
                    logits = model(x)
                    loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
                    if not torch.isfinite(loss):
                        raise ConfigError(f"training diverged in epoch {epoch + 1} "
                                          f"(loss {loss.item()})",
                                          f"lower the learning rate, got {lr}")
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    if sched is not None:
                        sched.step()
                    loss_sum += loss.item() * len(y)
                    correct += int((logits.argmax(1) == y).sum())
                    seen += len(y)
                    bar.set_postfix(loss=f"{loss_sum / seen:.3f}", refresh=False)
                result.train_loss.append(loss_sum / seen)
                result.train_accuracy.append(correct / seen)
                line = (f"epoch {epoch + 1}/{epochs}: loss {loss_sum / seen:.4f}, "
                        f"train acc {correct / seen:.4f}")
                if val_loader is not None:
                    result.val_accuracy.append(evaluate(model, val_loader, progress=progress))
                    line += f", val acc {result.val_accuracy[-1]:.4f}"
                result.epoch_s.append(time.perf_counter() - t0)
                if log is not None:
                    log(line + f" ({result.epoch_s[-1]:.0f} s)")
        finally:
            model.eval()
    result.wall_s = time.perf_counter() - start
    return result
