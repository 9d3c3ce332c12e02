"""Architectures in the styles people write them, independent of hwprune's zoo.

Each factory is a user model spec (``tests/conformance/models.py:vgg_mlp``); ``SHAPES``
gives the small input each runs at (``input_attr`` carries its own ``input_shape``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _cbr(cin: int, cout: int, k: int = 3, s: int = 1, groups: int = 1, act: type = nn.ReLU) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), act())


# ---- 1. VGG-style with an MLP head ---------------------------------------------------
class VGGMLP(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _cbr(3, 16), _cbr(16, 16), nn.MaxPool2d(2),
            _cbr(16, 32), _cbr(32, 32), nn.MaxPool2d(2),
            _cbr(32, 32), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(inplace=True), nn.Dropout(0.5),
            nn.Linear(64, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x))


def vgg_mlp() -> nn.Module:
    return VGGMLP()


# ---- 2. LeNet (and the MNIST CNN of the issue) ----------------------------------------
class LeNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = F.avg_pool2d(torch.tanh(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = x.view(x.size(0), -1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


def lenet() -> nn.Module:
    return LeNet()


class CNN(nn.Module):
    """The MNIST CNN of tutorials: conv/pool blocks, Linear -> ReLU -> Dropout -> Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(1, 16, 5, 1, 2), nn.ReLU(), nn.MaxPool2d(2))
        self.conv2 = nn.Sequential(nn.Conv2d(16, 32, 5, 1, 2), nn.ReLU(), nn.MaxPool2d(2))
        self.fc = nn.Sequential(nn.Linear(32 * 7 * 7, 128), nn.ReLU(), nn.Dropout(0.25), nn.Linear(128, 10))

    def forward(self, x):
        x = self.conv2(self.conv1(x))
        return self.fc(torch.flatten(x, 1))


def mnist_cnn() -> nn.Module:
    return CNN()


# ---- 3. Inception-style concat blocks, the concatenation feeding a residual add -------
class InceptionBlock(nn.Module):
    def __init__(self, cin: int, b1: int, b3: int, b5: int, bp: int) -> None:
        super().__init__()
        self.b1 = _cbr(cin, b1, 1)
        self.b3 = nn.Sequential(_cbr(cin, 16, 1), _cbr(16, b3, 3))
        self.b5 = nn.Sequential(_cbr(cin, 8, 1), _cbr(8, 8, 3), _cbr(8, b5, 3))
        self.bp = nn.Sequential(nn.MaxPool2d(3, 1, 1), _cbr(cin, bp, 1))

    def forward(self, x):
        return torch.cat([self.b1(x), self.b3(x), self.b5(x), self.bp(x)], 1)


class InceptionNet(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = _cbr(3, 48)
        self.block1 = InceptionBlock(48, 16, 16, 8, 8)    # 48 out: added to its input
        self.block2 = InceptionBlock(48, 24, 24, 8, 8)    # 64 out
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = self.stem(x)
        x = F.relu(x + self.block1(x))
        x = self.block2(F.max_pool2d(x, 2))
        return self.fc(torch.flatten(self.pool(x), 1))


def inception() -> nn.Module:
    return InceptionNet()


# ---- 4. A DenseNet block -------------------------------------------------------------
class DenseLayer(nn.Module):
    def __init__(self, cin: int, growth: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(cin)
        self.conv = nn.Conv2d(cin, growth, 3, padding=1, bias=False)

    def forward(self, x):
        return torch.cat([x, self.conv(F.relu(self.bn(x)))], 1)


class DenseNet(nn.Module):
    def __init__(self, num_classes: int = 10, growth: int = 12) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        layers, c = [], 16
        for _ in range(3):
            layers.append(DenseLayer(c, growth))
            c += growth
        self.block = nn.Sequential(*layers)
        self.trans = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, 24, 1, bias=False),
                                   nn.AvgPool2d(2))
        self.norm = nn.BatchNorm2d(24)
        self.fc = nn.Linear(24, num_classes)

    def forward(self, x):
        x = self.trans(self.block(self.stem(x)))
        x = F.adaptive_avg_pool2d(F.relu(self.norm(x)), 1)
        return self.fc(x.flatten(1))


def densenet() -> nn.Module:
    return DenseNet()


# ---- 5. MobileNetV3-small style (SE + hard-swish) -------------------------------------
class SqueezeExcite(nn.Module):
    def __init__(self, c: int, r: int = 4, gate: type = nn.Hardsigmoid, act: type = nn.ReLU) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(c, max(8, c // r), 1)
        self.act = act()
        self.fc2 = nn.Conv2d(max(8, c // r), c, 1)
        self.gate = gate()

    def forward(self, x):
        return x * self.gate(self.fc2(self.act(self.fc1(self.pool(x)))))


class InvertedResidualV3(nn.Module):
    def __init__(self, cin: int, exp: int, cout: int, k: int, s: int, se: bool, act: type) -> None:
        super().__init__()
        self.use_res = s == 1 and cin == cout
        self.expand = _cbr(cin, exp, 1, act=act) if exp != cin else nn.Identity()
        self.dw = _cbr(exp, exp, k, s, groups=exp, act=act)
        self.se = SqueezeExcite(exp) if se else nn.Identity()
        self.project = nn.Sequential(nn.Conv2d(exp, cout, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = self.project(self.se(self.dw(self.expand(x))))
        return x + y if self.use_res else y


class MobileNetV3Small(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = _cbr(3, 16, 3, 2, act=nn.Hardswish)
        self.blocks = nn.Sequential(
            InvertedResidualV3(16, 16, 16, 3, 2, True, nn.ReLU),
            InvertedResidualV3(16, 48, 24, 3, 1, False, nn.ReLU),
            InvertedResidualV3(24, 64, 24, 3, 1, False, nn.ReLU),
            InvertedResidualV3(24, 96, 40, 5, 2, True, nn.Hardswish),
            InvertedResidualV3(40, 120, 40, 5, 1, True, nn.Hardswish))
        self.last = _cbr(40, 96, 1, act=nn.Hardswish)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(96, 128),
                                  nn.Hardswish(), nn.Dropout(0.2), nn.Linear(128, num_classes))

    def forward(self, x):
        return self.head(self.last(self.blocks(self.stem(x))))


def mobilenetv3_small() -> nn.Module:
    return MobileNetV3Small()


# ---- 6. EfficientNet-style MBConv (SiLU + SE) -----------------------------------------
class MBConv(nn.Module):
    def __init__(self, cin: int, cout: int, expand: int, k: int, s: int) -> None:
        super().__init__()
        mid = cin * expand
        self.use_res = s == 1 and cin == cout
        self.expand = _cbr(cin, mid, 1, act=nn.SiLU)
        self.dw = _cbr(mid, mid, k, s, groups=mid, act=nn.SiLU)
        self.se = SqueezeExcite(mid, 4, gate=nn.Sigmoid, act=nn.SiLU)
        self.project = nn.Sequential(nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = self.project(self.se(self.dw(self.expand(x))))
        return x + y if self.use_res else y


class EfficientNetTiny(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = _cbr(3, 16, 3, 2, act=nn.SiLU)
        self.blocks = nn.Sequential(MBConv(16, 24, 4, 3, 2), MBConv(24, 24, 4, 3, 1), MBConv(24, 40, 4, 5, 2))
        self.head = _cbr(40, 64, 1, act=nn.SiLU)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = self.head(self.blocks(self.stem(x)))
        return self.fc(x.mean((2, 3)))


def efficientnet_mbconv() -> nn.Module:
    return EfficientNetTiny()


# ---- 7. ShuffleNetV2 (channel split + shuffle) ----------------------------------------
def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).contiguous().view(b, c, h, w)


class ShuffleUnit(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        branch = cout // 2
        if stride > 1:
            self.branch1 = nn.Sequential(
                nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin),
                nn.Conv2d(cin, branch, 1, bias=False), nn.BatchNorm2d(branch), nn.ReLU())
        c2 = cin if stride > 1 else branch
        self.branch2 = nn.Sequential(
            nn.Conv2d(c2, branch, 1, bias=False), nn.BatchNorm2d(branch), nn.ReLU(),
            nn.Conv2d(branch, branch, 3, stride, 1, groups=branch, bias=False), nn.BatchNorm2d(branch),
            nn.Conv2d(branch, branch, 1, bias=False), nn.BatchNorm2d(branch), nn.ReLU())

    def forward(self, x):
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), 1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), 1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = _cbr(3, 24, 3, 2)
        self.stage2 = nn.Sequential(ShuffleUnit(24, 48, 2), ShuffleUnit(48, 48, 1))
        self.stage3 = nn.Sequential(ShuffleUnit(48, 96, 2), ShuffleUnit(96, 96, 1))
        self.conv5 = _cbr(96, 128, 1)
        self.fc = nn.Linear(128, num_classes)

    def forward(self, x):
        x = self.conv5(self.stage3(self.stage2(self.stem(x))))
        return self.fc(x.mean([2, 3]))


def shufflenet_v2() -> nn.Module:
    return ShuffleNetV2()


# ---- 8. GhostNet-style (concat of a conv and a cheap depthwise conv) ------------------
class GhostModule(nn.Module):
    def __init__(self, cin: int, cout: int, relu: bool = True) -> None:
        super().__init__()
        init = cout // 2
        self.primary = nn.Sequential(nn.Conv2d(cin, init, 1, bias=False), nn.BatchNorm2d(init),
                                     nn.ReLU() if relu else nn.Identity())
        self.cheap = nn.Sequential(nn.Conv2d(init, cout - init, 3, 1, 1, groups=init, bias=False),
                                   nn.BatchNorm2d(cout - init), nn.ReLU() if relu else nn.Identity())

    def forward(self, x):
        y = self.primary(x)
        return torch.cat([y, self.cheap(y)], 1)


class GhostBottleneck(nn.Module):
    def __init__(self, cin: int, mid: int, cout: int, stride: int) -> None:
        super().__init__()
        self.ghost1 = GhostModule(cin, mid)
        self.dw = (nn.Sequential(nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False), nn.BatchNorm2d(mid))
                   if stride > 1 else nn.Identity())
        self.ghost2 = GhostModule(mid, cout, relu=False)
        self.shortcut = (nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin),
            nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout)))

    def forward(self, x):
        return self.ghost2(self.dw(self.ghost1(x))) + self.shortcut(x)


class GhostNet(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = _cbr(3, 16, 3, 2)
        self.blocks = nn.Sequential(GhostBottleneck(16, 32, 16, 1), GhostBottleneck(16, 48, 24, 2),
                                    GhostBottleneck(24, 72, 24, 1))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(24, num_classes))

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)))


def ghostnet() -> nn.Module:
    return GhostNet()


# ---- 9. RegNet-style grouped block ----------------------------------------------------
class XBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, group_width: int = 8) -> None:
        super().__init__()
        self.a = _cbr(cin, cout, 1)
        self.b = _cbr(cout, cout, 3, stride, groups=cout // group_width)
        self.c = nn.Sequential(nn.Conv2d(cout, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.proj = (None if stride == 1 and cin == cout else
                     nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)))

    def forward(self, x):
        skip = x if self.proj is None else self.proj(x)
        return F.relu(self.c(self.b(self.a(x))) + skip)


class RegNetTiny(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = _cbr(3, 16, 3, 2)
        self.s1 = nn.Sequential(XBlock(16, 32, 2), XBlock(32, 32, 1))
        self.s2 = nn.Sequential(XBlock(32, 64, 2), XBlock(64, 64, 1))
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = self.s2(self.s1(self.stem(x)))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def regnet() -> nn.Module:
    return RegNetTiny()


# ---- 10. UNet-style encoder/decoder ---------------------------------------------------
class UNet(nn.Module):
    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.enc1 = nn.Sequential(_cbr(3, 16), _cbr(16, 16))
        self.enc2 = nn.Sequential(_cbr(16, 32), _cbr(32, 32))
        self.bottom = nn.Sequential(nn.ZeroPad2d(1), nn.Conv2d(32, 64, 3), nn.BatchNorm2d(64), nn.ReLU())
        self.up2 = nn.ConvTranspose2d(64, 32, 2, stride=2)
        self.dec2 = _cbr(64, 32)
        self.dec1 = _cbr(32 + 16, 16)
        self.out = nn.Conv2d(16, classes, 1)

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        b = self.bottom(F.max_pool2d(e2, 2))
        d2 = self.dec2(torch.cat([self.up2(b), e2], 1))
        up = F.interpolate(d2, scale_factor=2, mode="bilinear", align_corners=False)
        d1 = self.dec1(torch.cat([up, e1], 1))
        return self.out(d1)


def unet() -> nn.Module:
    return UNet()


# ---- 11. A shared module called twice -------------------------------------------------
class SharedTwice(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = _cbr(3, 32, 3, 2)
        self.shared = _cbr(32, 32)   # applied twice: one set of weights, two kernels
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.down = _cbr(32, 48, 3, 2)
        self.fc = nn.Linear(48, num_classes)

    def forward(self, x):
        x = self.stem(x)
        x = self.shared(self.shared(x))
        x = self.down(F.max_pool2d(self.up(x), 2))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def shared_twice() -> nn.Module:
    return SharedTwice()


# ---- 12. Input shape from ``model.input_shape``; the other element-wise operators ----
class InputAttr(nn.Module):
    input_shape = (1, 3, 32, 32)

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 24, 3, padding=1)
        self.act1 = nn.LeakyReLU(0.1)
        self.c2 = nn.Conv2d(24, 24, 3, padding=1)
        self.act2 = nn.ReLU6()
        self.c3 = nn.Conv2d(24, 24, 3, padding=1)
        self.bn = nn.BatchNorm2d(24)     # after an add: onnxruntime cannot fold it
        self.pad = nn.ReflectionPad2d(1)
        self.c4 = nn.Conv2d(24, 32, 3)
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(32 * 16 * 16, num_classes)

    def forward(self, x):
        a = self.act1(self.c1(x))
        b = self.act2(self.c2(a))
        x = self.bn(a + self.c3(b))
        x = self.c4(self.pad(x))
        x = x * torch.sigmoid(x)  # swish written out
        return self.fc(self.pool(x).flatten(1))


def input_attr() -> nn.Module:
    return InputAttr()


# ---- Concatenations gated as a whole: squeeze-and-excitation over an inception block --
class GatedInceptionNet(nn.Module):
    """The gate (and the residual add of the second block) spans the concatenation, so
    each branch's channels are coupled with the SE convs but not with the other branch."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = _cbr(3, 24, s=2, act=nn.Hardswish)
        self.a1, self.b1 = _cbr(24, 16, 1), nn.Sequential(_cbr(24, 8, 1), _cbr(8, 16, 3))
        self.se1 = SqueezeExcite(32, gate=nn.Sigmoid)
        self.a2, self.b2 = _cbr(32, 12, 1), nn.Sequential(_cbr(32, 8, 1), _cbr(8, 20, 3))
        self.se2 = SqueezeExcite(32, gate=nn.Sigmoid)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(32, 64), nn.Hardswish(), nn.Linear(64, num_classes))

    def forward(self, x):
        x = self.stem(x)
        x = self.se1(torch.cat([self.a1(x), self.b1(x)], 1))
        x = x + self.se2(torch.cat([self.a2(x), self.b2(x)], 1))
        return self.head(F.adaptive_avg_pool2d(x, 1))


def gated_inception() -> nn.Module:
    return GatedInceptionNet()


# ---- not prunable safely: a gate broadcast from a channel mean -------------------------
class ChannelMeanGate(nn.Module):
    """Torch-Pruning couples the 1-channel mean with the gated tensor's channels: pruning
    breaks the model. hwprune must say which layer, in one line."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 16, 3, padding=1)
        self.c2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc = nn.Linear(32 * 8 * 8, 10)

    def forward(self, x):
        a = F.relu(self.c1(x))
        y = torch.sigmoid(self.c2(a)) * a.mean(1, keepdim=True)
        return self.fc(F.avg_pool2d(y, 4).flatten(1))


def channel_mean_gate() -> nn.Module:
    return ChannelMeanGate()


SHAPES = {
    "vgg_mlp": (1, 3, 32, 32), "lenet": (1, 1, 28, 28), "mnist_cnn": (1, 1, 28, 28),
    "inception": (1, 3, 32, 32), "densenet": (1, 3, 32, 32), "mobilenetv3_small": (1, 3, 32, 32),
    "efficientnet_mbconv": (1, 3, 32, 32), "shufflenet_v2": (1, 3, 32, 32), "ghostnet": (1, 3, 32, 32),
    "regnet": (1, 3, 32, 32), "unet": (1, 3, 32, 32), "shared_twice": (1, 3, 32, 32),
    "input_attr": None, "gated_inception": (1, 3, 32, 32), "channel_mean_gate": (1, 3, 32, 32),
}
