"""Swin-T against a plain-PyTorch Swin Transformer written here in torchvision's layout (v1).

The reference's parameters get the spec's values by position: both list them in the same order,
except that torchvision's PatchMerging creates its reduction before its norm, so the reference's
list puts the merging norm first, as the spec does. Outputs agree at eval and, with stochastic
depth on, in training from the same seed: both draw one Bernoulli mask of shape [N, 1, 1, 1] per
residual branch with p > 0 (two per block: attention, then MLP), in block order. The small sizes
cover shifted windows, a stage that is one window (no shift), a stage padded up to the window,
and patch merging of an odd-sized map.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import nndsl

from conftest import ROOT
from helpers import assert_onnx_is_the_inference_graph, assert_same_in_eval_and_training, \
    copy_by_position
from reference_models import stochastic_depth

SPEC = ROOT / "specs" / "vision" / "swin_tiny.nn"
# 16x16 -> 8x8 -> 4x4 (one window: no shift) -> 2x2 (padded to one 4x4 window)
SMALL = {"classes": 10, "embed": 16, "depths": [2, 2, 2, 2], "heads": [1, 2, 2, 4], "window": 4,
         "sd": 0.4, "size": 64}
# 28x28 -> 14x14 (padded to 21x21) -> 7x7 (one window) -> 4x4 (odd map merged; padded to 7x7)
SMALL_W7 = {"classes": 10, "embed": 16, "depths": [2, 2, 2, 1], "heads": [1, 2, 2, 4],
            "window": 7, "sd": 0.2, "size": 112}


def shifted_window_attention(x, qkv_weight, proj_weight, relative_position_bias, window_size,
                             num_heads, shift_size, qkv_bias, proj_bias):
    """torchvision.models.swin_transformer.shifted_window_attention (v1, no dropout)."""
    B, H, W, C = x.shape
    pad_r = (window_size[1] - W % window_size[1]) % window_size[1]
    pad_b = (window_size[0] - H % window_size[0]) % window_size[0]
    x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
    _, pad_H, pad_W, _ = x.shape
    shift_size = list(shift_size)
    if window_size[0] >= pad_H:
        shift_size[0] = 0
    if window_size[1] >= pad_W:
        shift_size[1] = 0
    if sum(shift_size) > 0:
        x = torch.roll(x, shifts=(-shift_size[0], -shift_size[1]), dims=(1, 2))
    num_windows = (pad_H // window_size[0]) * (pad_W // window_size[1])
    x = x.view(B, pad_H // window_size[0], window_size[0], pad_W // window_size[1],
               window_size[1], C)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(B * num_windows, window_size[0] * window_size[1], C)
    qkv = F.linear(x, qkv_weight, qkv_bias)
    qkv = qkv.reshape(x.size(0), x.size(1), 3, num_heads, C // num_heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    q = q * (C // num_heads) ** -0.5
    attn = q.matmul(k.transpose(-2, -1))
    attn = attn + relative_position_bias
    if sum(shift_size) > 0:
        attn_mask = x.new_zeros((pad_H, pad_W))
        h_slices = ((0, -window_size[0]), (-window_size[0], -shift_size[0]),
                    (-shift_size[0], None))
        w_slices = ((0, -window_size[1]), (-window_size[1], -shift_size[1]),
                    (-shift_size[1], None))
        count = 0
        for h in h_slices:
            for w in w_slices:
                attn_mask[h[0]:h[1], w[0]:w[1]] = count
                count += 1
        attn_mask = attn_mask.view(pad_H // window_size[0], window_size[0],
                                   pad_W // window_size[1], window_size[1])
        attn_mask = attn_mask.permute(0, 2, 1, 3).reshape(num_windows,
                                                          window_size[0] * window_size[1])
        attn_mask = attn_mask.unsqueeze(1) - attn_mask.unsqueeze(2)
        attn_mask = attn_mask.masked_fill(attn_mask != 0, float(-100.0)).masked_fill(
            attn_mask == 0, float(0.0))
        attn = attn.view(x.size(0) // num_windows, num_windows, num_heads, x.size(1), x.size(1))
        attn = attn + attn_mask.unsqueeze(1).unsqueeze(0)
        attn = attn.view(-1, num_heads, x.size(1), x.size(1))
    attn = F.softmax(attn, dim=-1)
    x = attn.matmul(v).transpose(1, 2).reshape(x.size(0), x.size(1), C)
    x = F.linear(x, proj_weight, proj_bias)
    x = x.view(B, pad_H // window_size[0], pad_W // window_size[1], window_size[0],
               window_size[1], C)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(B, pad_H, pad_W, C)
    if sum(shift_size) > 0:
        x = torch.roll(x, shifts=(shift_size[0], shift_size[1]), dims=(1, 2))
    return x[:, :H, :W, :].contiguous()


class ShiftedWindowAttention(nn.Module):
    def __init__(self, dim, window_size, shift_size, num_heads):
        super().__init__()
        self.window_size, self.shift_size, self.num_heads = window_size, shift_size, num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window_size[0] - 1) * (2 * window_size[1] - 1), num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        coords_h = torch.arange(window_size[0])
        coords_w = torch.arange(window_size[1])
        coords = torch.stack(torch.meshgrid(coords_h, coords_w, indexing="ij"))
        coords_flatten = torch.flatten(coords, 1)
        relative_coords = coords_flatten[:, :, None] - coords_flatten[:, None, :]
        relative_coords = relative_coords.permute(1, 2, 0).contiguous()
        relative_coords[:, :, 0] += window_size[0] - 1
        relative_coords[:, :, 1] += window_size[1] - 1
        relative_coords[:, :, 0] *= 2 * window_size[1] - 1
        self.register_buffer("relative_position_index", relative_coords.sum(-1).flatten())

    def forward(self, x):
        n = self.window_size[0] * self.window_size[1]
        bias = self.relative_position_bias_table[self.relative_position_index]
        bias = bias.view(n, n, -1).permute(2, 0, 1).contiguous().unsqueeze(0)
        return shifted_window_attention(x, self.qkv.weight, self.proj.weight, bias,
                                        self.window_size, self.num_heads, self.shift_size,
                                        self.qkv.bias, self.proj.bias)


class SwinTransformerBlock(nn.Module):
    def __init__(self, dim, num_heads, window_size, shift_size, sd_prob):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-5)
        self.attn = ShiftedWindowAttention(dim, window_size, shift_size, num_heads)
        self.p = sd_prob
        self.norm2 = nn.LayerNorm(dim, eps=1e-5)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Dropout(0.0),
                                 nn.Linear(4 * dim, dim), nn.Dropout(0.0))

    def forward(self, x):
        x = x + stochastic_depth(self.attn(self.norm1(x)), self.p, self.training)
        return x + stochastic_depth(self.mlp(self.norm2(x)), self.p, self.training)


class PatchMerging(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim, eps=1e-5)

    def forward(self, x):
        H, W, _ = x.shape[-3:]
        x = F.pad(x, (0, 0, 0, W % 2, 0, H % 2))
        x0 = x[..., 0::2, 0::2, :]
        x1 = x[..., 1::2, 0::2, :]
        x2 = x[..., 0::2, 1::2, :]
        x3 = x[..., 1::2, 1::2, :]
        return self.reduction(self.norm(torch.cat([x0, x1, x2, x3], -1)))


class Permute(nn.Module):
    def __init__(self, dims):
        super().__init__()
        self.dims = dims

    def forward(self, x):
        return x.permute(self.dims)


class SwinTransformer(nn.Module):
    def __init__(self, embed_dim, depths, num_heads, window_size, stochastic_depth_prob,
                 num_classes):
        super().__init__()
        window_size = [window_size, window_size]
        layers = [nn.Sequential(nn.Conv2d(3, embed_dim, kernel_size=4, stride=4),
                                Permute([0, 2, 3, 1]), nn.LayerNorm(embed_dim, eps=1e-5))]
        total_stage_blocks = sum(depths)
        stage_block_id = 0
        for i_stage in range(len(depths)):
            stage = []
            dim = embed_dim * 2 ** i_stage
            for i_layer in range(depths[i_stage]):
                sd_prob = stochastic_depth_prob * float(stage_block_id) / (total_stage_blocks - 1)
                stage.append(SwinTransformerBlock(
                    dim, num_heads[i_stage], window_size,
                    [0 if i_layer % 2 == 0 else w // 2 for w in window_size], sd_prob))
                stage_block_id += 1
            layers.append(nn.Sequential(*stage))
            if i_stage < len(depths) - 1:
                layers.append(PatchMerging(dim))
        self.features = nn.Sequential(*layers)
        num_features = embed_dim * 2 ** (len(depths) - 1)
        self.norm = nn.LayerNorm(num_features, eps=1e-5)
        self.permute = Permute([0, 3, 1, 2])
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.head = nn.Linear(num_features, num_classes)

    def forward(self, x):
        x = self.norm(self.features(x))
        return self.head(self.flatten(self.avgpool(self.permute(x))))


def spec_order(module):
    """The reference's parameters in the order the spec creates them: a module's own first (the
    bias table), then its children's, with PatchMerging's norm before its reduction."""
    if isinstance(module, PatchMerging):
        return [*module.norm.parameters(), module.reduction.weight]
    own = [p for p in module._parameters.values() if p is not None]
    return own + [p for c in module.children() for p in spec_order(c)]


def reference(params):
    return SwinTransformer(params["embed"], params["depths"], params["heads"], params["window"],
                           params["sd"], params["classes"])


def pair(params, opt="O1"):
    c = nndsl.compile(SPEC, params=params, opt=opt)
    m = c.to_torch(seed=0)
    ref = reference(params)
    theirs = spec_order(ref)
    assert len(theirs) == len(list(ref.parameters()))
    copy_by_position(list(m.parameters()), theirs)
    return c, m, ref


def close(got, want, scale):
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * scale)


def test_full_size_parameter_count():
    c = nndsl.compile(SPEC)
    assert c.param_count() == 28_288_354
    ref = reference({"embed": 96, "depths": [2, 2, 6, 2], "heads": [3, 6, 12, 24], "window": 7,
                     "sd": 0.2, "classes": 1000})
    assert sum(p.numel() for p in ref.parameters()) == 28_288_354


@pytest.mark.parametrize("params", [SMALL, SMALL_W7], ids=["window4", "window7"])
def test_eval_and_train_outputs_match_the_reference(params):
    c, m, ref = pair(params)
    size = params["size"]
    x = torch.randn(6, 3, size, size, generator=torch.Generator().manual_seed(1))
    assert_same_in_eval_and_training(m, ref, x)


def test_onnx_is_the_inference_graph():
    c, m, _ = pair(SMALL)
    assert_onnx_is_the_inference_graph(c, m, (2, 3, 64, 64))


def test_position_index_and_shift_mask_are_folded_at_o1():
    o0 = nndsl.compile(SPEC, params=SMALL, opt="O0")
    o1 = nndsl.compile(SPEC, params=SMALL, opt="O1")
    assert any(n.op == "arange" for n in o0.graph)
    assert not any(n.op == "arange" for n in o1.graph)
    consts = {n.name: n.type for n in o1.graph.params() if ".const" in n.name}
    index = [k for k, t in consts.items() if t.dtype == "i64"]
    masks = [k for k, t in consts.items() if t.dtype == "f32"]
    assert len(index) == 1, "one position index, shared by every block"
    assert len(masks) == 2, "a shift mask for each of the two shifted stages"
    m0, m1 = o0.to_torch(seed=0).eval(), o1.to_torch(seed=0).eval()
    buffers = dict(m1.named_buffers())
    want_index = ShiftedWindowAttention(16, [4, 4], [0, 0], 1).relative_position_index
    assert torch.equal(buffers[index[0]].flatten(), want_index)
    for k in masks:
        assert set(buffers[k].unique().tolist()) == {-100.0, 0.0}
    m1.load_state_dict(m0.state_dict(), strict=False)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want, got = m0(image=x), m1(image=x)
    close(got, want, float(want.abs().max()))
