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
    def __init__(self, width: int, mult: int, p: float):
        super().__init__()
        self.c_fc = nn.Linear(width, mult * width)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(mult * width, width)
        self.dropout = nn.Dropout(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class GPTBlock(nn.Module):
    def __init__(self, width: int, heads: int, p: float, ctx: int, flash: bool = True):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = CausalSelfAttention(width, heads, p, ctx, flash)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = GPTMLP(width, 4, p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        x = x + self.mlp(self.ln_2(x))
        return x


class GPT(nn.Module):
    """A GPT-2-style decoder; ``lm_head`` shares its weight with the token embedding.

    ``flash`` picks ``F.scaled_dot_product_attention`` (the default, as a PyTorch user would
    write it today); ``flash=False`` writes softmax(QKᵀ/√d)V out with a causal mask buffer.
    """

    tied = {"lm_head.weight": "transformer.wte.weight"}

    def __init__(self, vocab: int = 4096, ctx: int = 1024, width: int = 256, heads: int = 8,
                 layers: int = 4, p: float = 0.0, *, flash: bool = True):
        super().__init__()
        self.ctx = ctx
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(vocab, width),
            wpe=nn.Embedding(ctx, width),
            drop=nn.Dropout(p),
            h=nn.ModuleList([GPTBlock(width, heads, p, ctx, flash) for _ in range(layers)]),
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
# state-dict conversion


def _key_fn(ref: nn.Module | type):
    cls = ref if isinstance(ref, type) else type(ref)
    return cls.from_nndsl_key, getattr(cls, "tied", {})


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
           "BasicBlock", "Bottleneck", "LSTMSentiment", "GPT", "to_reference", "to_nndsl",
           "unique_param_count"]
