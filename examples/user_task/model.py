"""Example user model for hwprune: a small CNN for the 3x32x32 task in ``data.py``.

hwprune builds a user model from ``path/to/file.py:factory``; the factory returns an
``nn.Module``. A class attribute ``input_shape`` (N x C x H x W) tells hwprune the
static shape to profile, so no ``--input-shape`` flag is needed.

    from hwprune.models import load_model
    lm = load_model("examples/user_task/model.py:build", pretrained=False)
"""
from __future__ import annotations

from torch import nn


def _cbr(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SmallCNN(nn.Module):
    input_shape = (1, 3, 32, 32)

    def __init__(self, num_classes: int = 8, widths: tuple[int, int, int] = (16, 32, 64)) -> None:
        super().__init__()
        w1, w2, w3 = widths
        self.features = nn.Sequential(
            _cbr(3, w1), _cbr(w1, w1),
            _cbr(w1, w2, 2), _cbr(w2, w2),      # 16x16
            _cbr(w2, w3, 2), _cbr(w3, w3),      # 8x8
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(w3, num_classes)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


def build() -> SmallCNN:
    return SmallCNN()
