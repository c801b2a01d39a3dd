"""ConvNeXt-T against a plain-PyTorch ConvNeXt written here in torchvision's layout.

The reference's parameters get the spec's values by position (both list them in the same order);
outputs agree at eval and, with stochastic depth on, in training from the same seed: both draw
one Bernoulli mask of shape [N, 1, 1, 1] per block with p > 0, in block order.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

import nndsl

from conftest import ROOT
from helpers import assert_onnx_is_the_inference_graph, assert_same_in_eval_and_training, \
    copy_by_position
from reference_models import stochastic_depth

SPEC = ROOT / "specs" / "vision" / "convnext_tiny.nn"
SMALL = {"classes": 7, "dims": [8, 16, 24, 32], "depths": [1, 2, 2, 1], "sd": 0.4, "size": 64}


class LayerNorm2d(nn.LayerNorm):
    def forward(self, x):
        return F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias,
                            self.eps).permute(0, 3, 1, 2)


class Block(nn.Module):
    def __init__(self, dim, p):
        super().__init__()
        self.layer_scale = nn.Parameter(torch.ones(dim, 1, 1) * 1e-6)
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.p = p

    def forward(self, x):
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.pwconv2(F.gelu(self.pwconv1(self.norm(y)))).permute(0, 3, 1, 2)
        return x + stochastic_depth(self.layer_scale * y, self.p, self.training)


class ConvNeXt(nn.Module):
    def __init__(self, dims, depths, classes, sd):
        super().__init__()
        self.stem = nn.Conv2d(3, dims[0], 4, stride=4)
        self.stem_norm = LayerNorm2d(dims[0], eps=1e-6)
        layers, k, total = [], 0, sum(depths)
        for i, d in enumerate(depths):
            if i > 0:
                layers += [LayerNorm2d(dims[i - 1], eps=1e-6),
                           nn.Conv2d(dims[i - 1], dims[i], 2, stride=2)]
            for _ in range(d):
                layers.append(Block(dims[i], sd * k / (total - 1.0)))
                k += 1
        self.features = nn.Sequential(*layers)
        self.head_norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.head = nn.Linear(dims[-1], classes)

    def forward(self, x):
        x = self.features(self.stem_norm(self.stem(x)))
        return self.head(self.head_norm(F.adaptive_avg_pool2d(x, 1).flatten(1)))


def pair(params):
    c = nndsl.compile(SPEC, params=params)
    m = c.to_torch(seed=0)
    ref = ConvNeXt(params["dims"], params["depths"], params["classes"], params["sd"])
    copy_by_position(list(m.parameters()), list(ref.parameters()))
    return c, m, ref


def test_full_size_parameter_count():
    assert nndsl.compile(SPEC).param_count() == 28_589_128


def test_eval_and_train_outputs_match_the_reference():
    c, m, ref = pair(SMALL)
    x = torch.randn(6, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    assert_same_in_eval_and_training(m, ref, x)


def test_onnx_is_the_inference_graph():
    c, m, _ = pair(SMALL)
    assert_onnx_is_the_inference_graph(c, m, (2, 3, 64, 64))
