"""Hand-written PyTorch equivalents of the zoo specs, used as ground truth by the tests.

Each model is written the way a PyTorch user would write it by hand (``nn.Sequential`` stacks,
a torchvision-style ``ResNet``, a nanoGPT-style ``GPT``), independently of nndsl. Constructors take
the same parameters as the spec they mirror, so tests can build reduced sizes.

Every class has a static ``from_nndsl_key(name)`` that maps a state-dict key of the compiled spec
(its scope path, e.g. ``layers.1.b0.down_conv.weight``) to the key of the hand-written model
(``layer2.0.downsample.0.weight``). The module-level helpers :func:`to_reference` and
:func:`to_nndsl` convert whole state dicts in either direction; tied weights (GPT's ``lm_head``)
are filled in on the way to the reference model and dropped on the way back.

Initialisation is PyTorch's per-layer default everywhere (no re-initialisation loops): the
compiled models record the same defaults, and the tests load one set of weights into both.
"""

from __future__ import annotations

import math
import re
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

# --------------------------------------------------------------------------------------------
# fundamentals


class Perceptron(nn.Module):
    """One linear unit: ``logit = w·x + b``."""

    def __init__(self, features: int = 4):
        super().__init__()
        self.fc = nn.Linear(features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)

    @staticmethod
    def from_nndsl_key(name: str) -> str:
        return re.sub(r"^unit\.", "fc.", name)


class MLP(nn.Module):
    """Linear/BatchNorm/ReLU/Dropout hidden layers in one ``nn.Sequential``, then a linear head."""

    def __init__(self, inputs: int = 784, hidden: Sequence[int] = (256, 128), classes: int = 10,
                 p: float = 0.0, norm: bool = True):
        super().__init__()
        layers: list[nn.Module] = []
        prev = inputs
        for width in hidden:
            layers += [nn.Linear(prev, width), nn.BatchNorm1d(width) if norm else nn.Identity(),
                       nn.ReLU(inplace=True), nn.Dropout(p)]
            prev = width
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(prev, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))

    @staticmethod
    def from_nndsl_key(name: str) -> str:
        # layers.{i}.fc.* -> body.{4 i}.*, layers.{i}.bn.* -> body.{4 i + 1}.*
        # (Linear, BatchNorm, ReLU, Dropout per hidden layer)
        name = re.sub(r"^layers\.(\d+)\.fc\.", lambda m: f"body.{4 * int(m[1])}.", name)
        return re.sub(r"^layers\.(\d+)\.bn\.", lambda m: f"body.{4 * int(m[1]) + 1}.", name)


# --------------------------------------------------------------------------------------------
# small convnets


class MnistCNN(nn.Module):
    """The classic two-conv MNIST network, written with the functional API."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.fc1 = nn.Linear(64 * 5 * 5, 64)
        self.fc2 = nn.Linear(64, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        return self.fc2(x)

    @staticmethod
    def from_nndsl_key(name: str) -> str:
        return name  # the spec uses the same layer names


class LeNet5(nn.Module):
    """LeNet-5 in the torchvision ``features``/``classifier`` layout."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, kernel_size=5, padding=2), nn.Tanh(), nn.AvgPool2d(2),
            nn.Conv2d(6, 16, kernel_size=5), nn.Tanh(), nn.AvgPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Linear(16 * 5 * 5, 120), nn.Tanh(),
            nn.Linear(120, 84), nn.Tanh(),
            nn.Linear(84, classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)

    _KEYS = {"c1": "features.0", "c3": "features.3", "f5": "classifier.0",
             "f6": "classifier.2", "out": "classifier.4"}

    @staticmethod
    def from_nndsl_key(name: str) -> str:
        layer, leaf = name.split(".", 1)
        return f"{LeNet5._KEYS[layer]}.{leaf}"


# --------------------------------------------------------------------------------------------
# ResNet, torchvision layout


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck: the stride sits on the 3x3 convolution."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet(nn.Module):
    def __init__(self, block: type[BasicBlock] | type[Bottleneck], layers: Sequence[int],
                 num_classes: int = 1000, width: int = 64):
        super().__init__()
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, width, layers[0])
        self.layer2 = self._make_layer(block, width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(block, width * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(block, width * 8, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(width * 8 * block.expansion, num_classes)

    def _make_layer(self, block, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(block(self.inplanes, planes))
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.fc(x)

    @staticmethod
    def from_nndsl_key(name: str) -> str:
        name = re.sub(r"^stem\.conv\.", "conv1.", name)
        name = re.sub(r"^stem\.bn\.", "bn1.", name)
        # layers.{i}.b0 / .b1 (ResNet-18) and layers.{i}.blocks_rest.{j}.b (ResNet-50)
        name = re.sub(r"^layers\.(\d+)\.b(\d+)\.",
                      lambda m: f"layer{int(m[1]) + 1}.{m[2]}.", name)
        name = re.sub(r"^layers\.(\d+)\.blocks_rest\.(\d+)\.b\.",
                      lambda m: f"layer{int(m[1]) + 1}.{int(m[2]) + 1}.", name)
        name = name.replace(".down_conv.", ".downsample.0.").replace(".down_bn.", ".downsample.1.")
        return name


class ResNet18(ResNet):
    def __init__(self, classes: int = 1000, width: int = 64):
        super().__init__(BasicBlock, [2, 2, 2, 2], classes, width)


class ResNet50(ResNet):
    def __init__(self, classes: int = 1000, width: int = 64, blocks: Sequence[int] = (3, 4, 6, 3)):
        super().__init__(Bottleneck, list(blocks), classes, width)


# --------------------------------------------------------------------------------------------
# sequence model


class LSTMSentiment(nn.Module):
    """Embedding -> dropout -> single-layer LSTM -> linear head on the last time step."""

    def __init__(self, vocab: int = 10000, embed: int = 128, hidden: int = 64, p: float = 0.5):
        super().__init__()
        self.embedding = nn.Embedding(vocab, embed)
        self.dropout = nn.Dropout(p)
        self.lstm = nn.LSTM(embed, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, 1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.dropout(self.embedding(tokens)))
        return self.fc(out[:, -1])

    @staticmethod
    def from_nndsl_key(name: str) -> str:
        return re.sub(r"^head\.", "fc.", name)


# --------------------------------------------------------------------------------------------
# GPT, nanoGPT layout


class CausalSelfAttention(nn.Module):
    def __init__(self, width: int, heads: int, p: float, ctx: int, flash: bool = True):
        super().__init__()
        assert width % heads == 0
        self.c_attn = nn.Linear(width, 3 * width)
        self.c_proj = nn.Linear(width, width)
        self.attn_dropout = nn.Dropout(p)
        self.resid_dropout = nn.Dropout(p)
        self.n_head = heads
        self.n_embd = width
        self.dropout = p
        self.flash = flash
        if not flash:  # the causal mask, for attention written out by hand
            mask = torch.tril(torch.ones(ctx, ctx, dtype=torch.bool)).view(1, 1, ctx, ctx)
            self.register_buffer("bias", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        if self.flash:
            y = F.scaled_dot_product_attention(
                q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True)
        else:
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
            att = att.masked_fill(~self.bias[:, :, :T, :T], float("-inf"))
            att = self.attn_dropout(F.softmax(att, dim=-1))
            y = att @ v
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class GPTMLP(nn.Module):
    def __init__(self, width: int, mult: int, p: float, approximate: str = "none"):
        super().__init__()
        self.c_fc = nn.Linear(width, mult * width)
        self.gelu = nn.GELU(approximate=approximate)
        self.c_proj = nn.Linear(mult * width, width)
        self.dropout = nn.Dropout(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class GPTBlock(nn.Module):
    def __init__(self, width: int, heads: int, p: float, ctx: int, flash: bool = True,
                 approximate: str = "none"):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = CausalSelfAttention(width, heads, p, ctx, flash)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = GPTMLP(width, 4, p, approximate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        x = x + self.mlp(self.ln_2(x))
        return x


class GPT(nn.Module):
    """A GPT-2-style decoder; ``lm_head`` shares its weight with the token embedding.

    ``flash`` picks ``F.scaled_dot_product_attention`` (the default, as a PyTorch user would
    write it today); ``flash=False`` writes softmax(QKᵀ/√d)V out with a causal mask buffer.
    ``approximate`` is the MLP's GELU: ``"none"`` (nanoGPT's ``nn.GELU()``) or ``"tanh"``
    (GPT-2's ``gelu_new``, as HuggingFace's ``GPT2MLP``).
    """

    tied = {"lm_head.weight": "transformer.wte.weight"}

    def __init__(self, vocab: int = 4096, ctx: int = 1024, width: int = 256, heads: int = 8,
                 layers: int = 4, p: float = 0.0, *, flash: bool = True,
                 approximate: str = "none"):
        super().__init__()
        self.ctx = ctx
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(vocab, width),
            wpe=nn.Embedding(ctx, width),
            drop=nn.Dropout(p),
            h=nn.ModuleList([GPTBlock(width, heads, p, ctx, flash, approximate)
                             for _ in range(layers)]),
            ln_f=nn.LayerNorm(width),
        ))
        self.lm_head = nn.Linear(width, vocab, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        b, t = idx.size()
        assert t <= self.ctx, f"cannot forward a sequence of length {t}, context is {self.ctx}"
        pos = torch.arange(0, t, dtype=torch.long, device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        for block in self.transformer.h:
            x = block(x)
        x = self.transformer.ln_f(x)
        return self.lm_head(x)

    @staticmethod
    def from_nndsl_key(name: str) -> str:
        name = re.sub(r"^h\.(\d+)\.block\.", r"h.\1.", name)
        name = re.sub(r"^(h\.\d+)\.c_(fc|proj)\.", r"\1.mlp.c_\2.", name)
        return "transformer." + name


# --------------------------------------------------------------------------------------------
# AlexNet, VGG and EfficientNet, torchvision layout (torchvision.models.alexnet, vgg16/vgg19 and
# efficientnet_b0 written out, with their constructor arguments as the specs name them)


class AlexNet(nn.Module):
    """torchvision's ``AlexNet``: the classifier is dropout, fc1, relu, dropout, fc2, relu, fc3."""

    def __init__(self, classes: int = 1000, width: int = 64, hidden: int = 4096, p: float = 0.5):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(3, w, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(w, 3 * w, kernel_size=5, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(3 * w, 6 * w, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(6 * w, 4 * w, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(4 * w, 4 * w, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=p), nn.Linear(4 * w * 6 * 6, hidden), nn.ReLU(inplace=True),
            nn.Dropout(p=p), nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))

    _KEYS = {"conv1": "features.0", "conv2": "features.3", "conv3": "features.6",
             "conv4": "features.8", "conv5": "features.10", "classifier.fc1": "classifier.1",
             "classifier.fc2": "classifier.4", "classifier.fc3": "classifier.6"}

    @staticmethod
    def from_nndsl_key(name: str) -> str:
        layer, leaf = name.rsplit(".", 1)
        return f"{AlexNet._KEYS[layer]}.{leaf}"


class VGG(nn.Module):
    """torchvision's ``VGG`` without batch norm: ``blocks`` 3x3 convolutions per stage (with relu),
    a 2x2 max pool after each stage; the classifier is fc1, relu, dropout, fc2, relu, dropout,
    fc3. ``blocks`` (2, 2, 3, 3, 3) is VGG-16 (configuration D), (2, 2, 4, 4, 4) VGG-19 (E)."""

    def __init__(self, classes: int = 1000, width: int = 64, hidden: int = 4096,
                 blocks: Sequence[int] = (2, 2, 3, 3, 3), p: float = 0.5):
        super().__init__()
        layers: list[nn.Module] = []
        self._conv_index: dict[tuple[int, int], int] = {}
        c_in = 3
        for i, n in enumerate(blocks):
            c = width * 2 ** min(i, 3)
            for j in range(n):
                self._conv_index[i, j] = len(layers)
                layers += [nn.Conv2d(c_in, c, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                c_in = c
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(c_in * 7 * 7, hidden), nn.ReLU(True), nn.Dropout(p=p),
            nn.Linear(hidden, hidden), nn.ReLU(True), nn.Dropout(p=p),
            nn.Linear(hidden, classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))

    def from_nndsl_key(self, name: str) -> str:
        # stages.{i}.stage.convs.{j}.conv.* -> features.{k}.*; the positions depend on `blocks`
        m = re.match(r"^stages\.(\d+)\.stage\.convs\.(\d+)\.conv\.(.*)$", name)
        if m:
            return f"features.{self._conv_index[int(m[1]), int(m[2])]}.{m[3]}"
        fc = {"fc1": 0, "fc2": 3, "fc3": 6}
        return re.sub(r"^classifier\.(fc\d)\.", lambda m: f"classifier.{fc[m[1]]}.", name)


def make_divisible(v: float, divisor: int = 8) -> int:
    """torchvision's ``_make_divisible``: a multiple of ``divisor``, at most 10% below ``v``."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


class ConvNormAct(nn.Sequential):
    """torchvision's ``Conv2dNormActivation`` with SiLU: conv (no bias), batch norm, activation."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1,
                 act: bool = True, eps: float = 1e-5):
        layers: list[nn.Module] = [
            nn.Conv2d(c_in, c_out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(c_out, eps=eps)]
        if act:
            layers.append(nn.SiLU(inplace=True))
        super().__init__(*layers)


class SqueezeExcitation(nn.Module):
    """torchvision's ``SqueezeExcitation`` as EfficientNet builds it (SiLU inside)."""

    def __init__(self, c: int, squeeze: int):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(c, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, c, 1)
        self.activation = nn.SiLU(inplace=True)
        self.scale_activation = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.fc2(self.activation(self.fc1(self.avgpool(x))))
        return self.scale_activation(scale) * x


def stochastic_depth(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """torchvision.ops.stochastic_depth, mode "row": one Bernoulli draw per sample."""
    if not training or p == 0.0:
        return x
    survival = 1.0 - p
    noise = torch.empty([x.shape[0]] + [1] * (x.ndim - 1), dtype=x.dtype, device=x.device)
    return x * noise.bernoulli_(survival).div_(survival)


class MBConv(nn.Module):
    """torchvision's EfficientNet ``MBConv``, with its stochastic depth on the residual branch."""

    def __init__(self, expand: int, kernel: int, stride: int, c_in: int, c_out: int,
                 eps: float = 1e-5, sd: float = 0.0):
        super().__init__()
        self.sd = sd
        self.use_res_connect = stride == 1 and c_in == c_out
        hidden = make_divisible(c_in * expand)
        layers: list[nn.Module] = []
        if hidden != c_in:
            layers.append(ConvNormAct(c_in, hidden, 1, eps=eps))
        layers.append(ConvNormAct(hidden, hidden, kernel, stride, groups=hidden, eps=eps))
        layers.append(SqueezeExcitation(hidden, max(1, c_in // 4)))
        layers.append(ConvNormAct(hidden, c_out, 1, act=False, eps=eps))
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        if self.use_res_connect:
            return stochastic_depth(out, self.sd, self.training) + x
        return out


class EfficientNet(nn.Module):
    """torchvision's ``EfficientNet`` with the B0 table; ``efficientnet_b0`` builds it with
    ``norm_layer=None``, that is ``nn.BatchNorm2d`` with its default eps 1e-5 (``eps``)."""

    # (expansion, kernel, stride, input channels, output channels, blocks)
    SETTING = [(1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2),
               (6, 3, 2, 40, 80, 3), (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4),
               (6, 3, 1, 192, 320, 1)]

    def __init__(self, classes: int = 1000, width: float = 1.0, depth: float = 1.0,
                 p: float = 0.2, eps: float = 1e-5, sd: float = 0.2):
        super().__init__()
        layers: list[nn.Module] = [
            ConvNormAct(3, make_divisible(32 * width), 3, stride=2, eps=eps)]
        total = sum(int(math.ceil(n * depth)) for *_, n in self.SETTING)
        block_id = 0
        for t, k, s, c_in, c_out, n in self.SETTING:
            c_in, c_out = make_divisible(c_in * width), make_divisible(c_out * width)
            stage = []
            for i in range(int(math.ceil(n * depth))):
                stage.append(MBConv(t, k, s if i == 0 else 1, c_in if i == 0 else c_out, c_out,
                                    eps, sd * block_id / total))
                block_id += 1
            layers.append(nn.Sequential(*stage))
        last_in = make_divisible(320 * width)
        layers.append(ConvNormAct(last_in, 4 * last_in, 1, eps=eps))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(p=p, inplace=True),
                                        nn.Linear(4 * last_in, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))

    @staticmethod
    def from_nndsl_key(name: str) -> str:
        name = re.sub(r"^stem_(conv|bn)\.", lambda m: f"features.0.{'01'[m[1] == 'bn']}.", name)
        name = re.sub(r"^head_(conv|bn)\.", lambda m: f"features.8.{'01'[m[1] == 'bn']}.", name)
        name = re.sub(r"^classifier\.", "classifier.1.", name)
        m = re.match(r"^stages\.(\d+)\.blocks\.(\d+)\.b\.(\w+?)(_conv|_bn|)\.(.*)$", name)
        if m:
            stage, block, layer, kind, leaf = int(m[1]), int(m[2]), m[3], m[4], m[5]
            e = 0 if stage == 0 else 1          # the first stage (expansion 1) has no expand conv
            pos = {"expand": 0, "dw": e, "se": e + 1, "project": e + 2}[layer]
            sub = {"_conv": ".0", "_bn": ".1", "": ""}[kind]
            name = f"features.{stage + 1}.{block}.block.{pos}{sub}.{leaf}"
        return name


# --------------------------------------------------------------------------------------------
# GCN and GAT with torch_geometric's semantics (GCNConv, GATConv), written from its documented
# behaviour in plain torch (torch_geometric itself is not a test dependency)


def add_remaining_self_loops(edge_index: torch.Tensor, edge_weight: torch.Tensor,
                             fill_value: float, num_nodes: int):
    """``torch_geometric.utils.add_remaining_self_loops``: every self-loop of ``edge_index`` is
    taken out, then one loop per node is appended, weighted as the loop it replaces (the last
    one given) or ``fill_value`` for a node that had none."""
    row, col = edge_index
    mask = row != col
    loop = torch.arange(num_nodes, device=edge_index.device)
    loop_weight = torch.full((num_nodes,), fill_value, dtype=edge_weight.dtype)
    inv = ~mask
    loop_weight[row[inv]] = edge_weight[inv]
    return (torch.cat([edge_index[:, mask], torch.stack([loop, loop])], dim=1),
            torch.cat([edge_weight[mask], loop_weight]))


class PygGCNConv(nn.Module):
    """``torch_geometric.nn.GCNConv`` (normalize, add_self_loops, not improved): x W, then
    gcn_norm (add_remaining_self_loops with fill value 1; deg^-1/2 at source and target, 0 for
    a node of degree 0), summed at the targets, plus the bias."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.lin = nn.Linear(c_in, c_out, bias=False)
        self.bias = nn.Parameter(torch.zeros(c_out))

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor,
                edge_weight: torch.Tensor | None = None) -> torch.Tensor:
        n = x.shape[0]
        if edge_weight is None:
            edge_weight = torch.ones(edge_index.shape[1], dtype=x.dtype)
        edge_index, edge_weight = add_remaining_self_loops(edge_index, edge_weight, 1.0, n)
        row, col = edge_index
        deg = torch.zeros(n, dtype=x.dtype).scatter_add_(0, col, edge_weight)
        dis = deg.pow(-0.5)
        dis = dis.masked_fill(dis == float("inf"), 0.0)
        w = dis[row] * edge_weight * dis[col]
        h = self.lin(x)
        out = torch.zeros_like(h).index_add_(0, col, h[row] * w[:, None])
        return out + self.bias


class PygGCN(nn.Module):
    """PyG's two-layer GCN example: dropout, conv1, relu, dropout, conv2."""

    def __init__(self, F: int = 1433, hidden: int = 16, classes: int = 7, p: float = 0.5):
        super().__init__()
        self.p = p
        self.conv1 = PygGCNConv(F, hidden)
        self.conv2 = PygGCNConv(hidden, classes)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        x = F.dropout(x, self.p, self.training)
        x = F.dropout(F.relu(self.conv1(x, edge_index)), self.p, self.training)
        return self.conv2(x, edge_index)

    @staticmethod
    def from_nndsl_key(name: str) -> str:
        return name  # conv{i}.lin.weight, conv{i}.bias: PyG's names


class PygGATConv(nn.Module):
    """``torch_geometric.nn.GATConv`` (add_self_loops): remove_self_loops, then add_self_loops;
    α = softmax over each target's edges of LeakyReLU_0.2(a_srcᵀ W h_j + a_dstᵀ W h_i)
    (torch_geometric.utils.softmax: less the target's max, a sum + 1e-16), dropout on α, Σ α W h_j
    at the target; heads concatenated or averaged, plus the bias."""

    def __init__(self, c_in: int, out: int, heads: int, concat: bool = True, p: float = 0.0):
        super().__init__()
        self.heads, self.out, self.concat, self.p = heads, out, concat, p
        self.lin = nn.Linear(c_in, heads * out, bias=False)
        self.att_src = nn.Parameter(torch.empty(1, heads, out))
        self.att_dst = nn.Parameter(torch.empty(1, heads, out))
        nn.init.xavier_uniform_(self.att_src)
        nn.init.xavier_uniform_(self.att_dst)
        self.bias = nn.Parameter(torch.zeros(heads * out if concat else out))

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        n, H, C = x.shape[0], self.heads, self.out
        h = self.lin(x).view(n, H, C)
        a_src = (h * self.att_src).sum(-1)
        a_dst = (h * self.att_dst).sum(-1)
        edge_index = edge_index[:, edge_index[0] != edge_index[1]]        # remove_self_loops
        loop = torch.arange(n)
        src, dst = torch.cat([edge_index, torch.stack([loop, loop])], dim=1)  # add_self_loops
        alpha = F.leaky_relu(a_src[src] + a_dst[dst], 0.2)
        index = dst[:, None].expand(-1, H)
        amax = torch.full((n, H), float("-inf"), dtype=alpha.dtype).scatter_reduce(
            0, index, alpha, "amax")
        e = (alpha - amax[dst]).exp()
        alpha = e / (torch.zeros(n, H, dtype=e.dtype).index_add_(0, dst, e) + 1e-16)[dst]
        alpha = F.dropout(alpha, self.p, self.training)
        out = torch.zeros(n, H, C, dtype=h.dtype).index_add_(0, dst, h[src] * alpha[..., None])
        out = out.reshape(n, H * C) if self.concat else out.mean(dim=1)
        return out + self.bias


class PygGAT(nn.Module):
    """The GAT of the paper with PyG's GATConv: dropout, conv1 (heads concatenated), elu,
    dropout, conv2 (heads averaged)."""

    def __init__(self, F: int = 1433, hidden: int = 8, heads: int = 8, classes: int = 7,
                 out_heads: int = 1, p: float = 0.6):
        super().__init__()
        self.p = p
        self.conv1 = PygGATConv(F, hidden, heads, concat=True, p=p)
        self.conv2 = PygGATConv(heads * hidden, classes, out_heads, concat=False, p=p)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        x = F.dropout(x, self.p, self.training)
        x = F.dropout(F.elu(self.conv1(x, edge_index)), self.p, self.training)
        return self.conv2(x, edge_index)

    @staticmethod
    def from_nndsl_key(name: str) -> str:
        return name  # conv{i}.lin.weight, conv{i}.att_src, conv{i}.att_dst, conv{i}.bias


# --------------------------------------------------------------------------------------------
# state-dict conversion


def _key_fn(ref: nn.Module | type):
    # an instance's own method: a mapping may depend on the sizes it was built with (VGG)
    return ref.from_nndsl_key, getattr(ref, "tied", {})


def to_reference(ref: nn.Module | type, nndsl_state: Mapping[str, torch.Tensor]) -> dict:
    """The compiled model's state dict renamed for the hand-written model ``ref``."""
    key, tied = _key_fn(ref)
    out = {key(k): v for k, v in nndsl_state.items()}
    if len(out) != len(nndsl_state):
        raise ValueError("the key mapping is not one-to-one")
    for alias, target in tied.items():
        out[alias] = out[target]
    return out


def to_nndsl(ref: nn.Module | type, ref_state: Mapping[str, torch.Tensor],
             nndsl_keys: Sequence[str]) -> dict:
    """The hand-written model's state dict renamed to the spec's ``nndsl_keys``."""
    key, tied = _key_fn(ref)
    inverse = {key(k): k for k in nndsl_keys}
    if len(inverse) != len(nndsl_keys):
        raise ValueError("the key mapping is not one-to-one")
    out = {}
    for k, v in ref_state.items():
        if k in tied:
            continue
        out[inverse[k]] = v
    return out


def unique_param_count(model: nn.Module) -> int:
    """Trainable parameters, each shared tensor once (``parameters()`` already dedups)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__ = ["Perceptron", "MLP", "MnistCNN", "LeNet5", "ResNet", "ResNet18", "ResNet50",
           "BasicBlock", "Bottleneck", "LSTMSentiment", "GPT", "AlexNet", "VGG", "EfficientNet",
           "MBConv", "PygGCN", "PygGCNConv", "PygGAT", "PygGATConv", "add_remaining_self_loops",
           "to_reference", "to_nndsl", "unique_param_count"]
