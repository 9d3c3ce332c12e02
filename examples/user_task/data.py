"""Example user task for hwprune: synthetic, learnable 3x32x32 images in 8 classes.

A task module defines ``train_loader()`` and ``val_loader()`` (``test_loader()`` is
optional). Each returns an iterable of ``(inputs, labels)`` batches: inputs a float
tensor N x C x H x W, labels a 1-D int64 tensor of class indices. A torch
``DataLoader`` is the usual choice; hwprune iterates it once per epoch.

    from hwprune.task import load_user_task
    task = load_user_task("examples/user_task/data.py")

The data: each class has a fixed smooth colour pattern; an image is its class's
pattern, randomly shifted by up to 4 pixels and scaled in contrast, plus Gaussian
noise. Everything is generated from fixed seeds, so every run sees the same images
and no download is needed. The noise is strong enough that accuracy is not free:
run this file to train ``model.py`` for three epochs with plain PyTorch (about ten
seconds on one core); validation accuracy climbs from about 0.4 to about 0.95.
"""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader, TensorDataset

num_classes = 8          # optional attribute: hwprune copies it into the task
IMAGE_SHAPE = (3, 32, 32)
BATCH_SIZE = 64


def _patterns(seed: int = 1234) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(num_classes, 3, 4, 4, generator=g)
    return torch.nn.functional.interpolate(coarse, size=IMAGE_SHAPE[1:], mode="bicubic",
                                           align_corners=False)


def _make(n: int, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, num_classes, (n,), generator=g)
    images = _patterns()[labels]
    shifts = torch.randint(-4, 5, (n, 2), generator=g)
    images = torch.stack([torch.roll(img, (int(dy), int(dx)), dims=(1, 2))
                          for img, (dy, dx) in zip(images, shifts)])
    contrast = 0.5 + torch.rand(n, 1, 1, 1, generator=g)
    images = contrast * images + 3.0 * torch.randn(images.shape, generator=g)
    return TensorDataset(images, labels)


def train_loader() -> DataLoader:
    # a seeded generator keeps the shuffle order reproducible
    return DataLoader(_make(2048, seed=1), batch_size=BATCH_SIZE, shuffle=True,
                      generator=torch.Generator().manual_seed(0))


def val_loader() -> DataLoader:
    return DataLoader(_make(512, seed=2), batch_size=256)


def test_loader() -> DataLoader:
    return DataLoader(_make(512, seed=3), batch_size=256)


if __name__ == "__main__":
    from model import build  # the sibling file; run as `python examples/user_task/data.py`

    torch.manual_seed(0)
    torch.set_num_threads(1)
    net = build()
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    for epoch in range(3):
        net.train()
        for x, y in train_loader():
            loss = torch.nn.functional.cross_entropy(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            right = sum(int((net(x).argmax(1) == y).sum()) for x, y in val_loader())
        print(f"epoch {epoch + 1}: loss {loss.item():.3f}, val accuracy {right / 512:.3f}")
