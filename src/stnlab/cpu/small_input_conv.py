"""The input gradient of a convolution with few input channels (a CNN's first layer behind a
spatial transformer) by depthwise convolutions: PyTorch's own CPU kernel for it is poorly
vectorised for one input channel and dominates the transformer's training cost on CPU.

``use_small_input_conv(model)`` turns each eligible ``nn.Conv2d`` / ``nn.Conv3d`` of a model
into ``SmallInputConv2d`` / ``SmallInputConv3d`` in place: same parameters, state dict and
values, only the backward differs (tests/test_small_input_conv.py). A training step, paired
rounds on 1 thread (benchmarks/bench_small_input_conv.py; the log of 2026-12-06): ST-CNN on
42x42 1.24x, the sequence ST-CNN Multi on 64x64 1.20x, ST-CNN3D on 32^3 1.12x slower without
it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

_CHUNK_BYTES = 4 << 20


def _input_grad_depthwise(grad_out: torch.Tensor, weight: torch.Tensor, padding) -> torch.Tensor:
    """Gradient of a stride-1 convolution (2-D or 3-D) wrt its input, for few input channels.

    ``grad_x[:, i] = sum_o conv(grad_y[:, o], flip(w[o, i]))``: one depthwise convolution per
    input channel in channels-last layout, then a sum over the output channels. On CPU this is
    5-6x faster than the native backward when the input has one channel.
    """
    oc, ic = weight.shape[:2]
    kernel = weight.shape[2:]
    nd = weight.dim() - 2
    conv = F.conv2d if nd == 2 else F.conv3d
    layout = torch.channels_last if nd == 2 else torch.channels_last_3d
    g = grad_out.contiguous(memory_format=layout)
    wf = weight.flip(list(range(2, 2 + nd)))  # a list: dynamo misreads flip(*range(...))
    pad = [k - 1 - p for k, p in zip(kernel, padding, strict=True)]
    in_size = [o + k - 1 - 2 * p for o, k, p in zip(g.shape[2:], kernel, padding, strict=True)]
    grad_x = g.new_empty(g.shape[0], ic, *in_size)
    # a few images at a time: the depthwise output (oc channels) stays in cache for its sum
    step = max(1, _CHUNK_BYTES // max(1, math.prod(g.shape[1:]) * g.element_size()))
    for i in range(ic):
        w_i = wf[:, i : i + 1].contiguous()
        for start in range(0, g.shape[0], step):
            y = conv(g[start : start + step], w_i, padding=pad, groups=oc)
            # channels-last: a sum over the innermost axis
            torch.sum(y, 1, keepdim=True, out=grad_x[start : start + step, i : i + 1])
    return grad_x


class _SmallInputConvFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, padding):
        ctx.save_for_backward(x, weight)
        ctx.padding = padding
        ctx.has_bias = bias is not None
        conv = F.conv2d if weight.dim() == 4 else F.conv3d
        return conv(x, weight, bias, padding=padding)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        # under autocast (bf16-mixed) the forward ran in bf16 on float32 inputs: the gradients
        # are computed in the parameters' dtype, as autograd's own conv backward returns them
        grad_out, x = grad_out.to(weight.dtype), x.to(weight.dtype)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = _input_grad_depthwise(grad_out, weight, ctx.padding)
        need_w = bool(ctx.needs_input_grad[1])
        need_b = bool(ctx.has_bias and ctx.needs_input_grad[2])
        if need_w or need_b:
            ones, zeros = [1] * (weight.dim() - 2), [0] * (weight.dim() - 2)
            _, grad_w, grad_b = torch.ops.aten.convolution_backward(
                grad_out, x, weight, [weight.shape[0]] if ctx.has_bias else None, ones,
                list(ctx.padding), ones, False, zeros, 1, [False, need_w, need_b],
            )
        return grad_x, grad_w, grad_b, None


class _SmallInputConv:
    """The ``forward`` of ``SmallInputConv2d`` / ``SmallInputConv3d`` (mixed into the conv):
    the depthwise input gradient where the input needs one on the CPU, else the plain conv."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.requires_grad and torch.is_grad_enabled() and x.device.type == "cpu":
            return _SmallInputConvFn.apply(x, self.weight, self.bias, self.padding)
        return super().forward(x)


class SmallInputConv2d(_SmallInputConv, nn.Conv2d):
    """``nn.Conv2d`` (stride 1, few input channels) whose input gradient on the CPU comes from
    depthwise convolutions; same parameters, state dict and values."""


class SmallInputConv3d(_SmallInputConv, nn.Conv3d):
    """The 3-D ``SmallInputConv2d``: the first layer behind a volumetric transformer."""


_SWAPS: dict[type[nn.Module], type[nn.Module]] = {
    nn.Conv2d: SmallInputConv2d, nn.Conv3d: SmallInputConv3d}


def _eligible(m: nn.Module, max_channels: int) -> bool:
    return (type(m) in _SWAPS and m.in_channels <= max_channels and m.groups == 1
            and all(s == 1 for s in m.stride) and all(d == 1 for d in m.dilation)
            and m.padding_mode == "zeros" and isinstance(m.padding, tuple))


def use_small_input_conv(model: nn.Module, max_channels: int = 3) -> int:
    """Turn every plain ``nn.Conv2d`` / ``nn.Conv3d`` of ``model`` with at most
    ``max_channels`` input channels (stride 1, no dilation or groups, zero padding given as
    numbers) into its ``SmallInputConv`` twin, in place (the same module objects and
    parameters); returns how many. Where the input needs no gradient (a network's first layer
    on the data) nothing changes."""
    swapped = 0
    for m in model.modules():
        if _eligible(m, max_channels):
            m.__class__ = _SWAPS[type(m)]
            swapped += 1
    return swapped


__all__ = ["SmallInputConv2d", "SmallInputConv3d", "use_small_input_conv"]
