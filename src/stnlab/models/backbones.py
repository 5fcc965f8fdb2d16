"""Plain backbones of the paper's MNIST experiments (A.4): CNN and FCN."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from stnlab.spatial import SpatialTransformer, spatial_transformers
from stnlab.spatial.localisation import dense_layers


def size2(size: int | Sequence[int]) -> tuple[int, int]:
    """``42`` or ``[42, 42]`` -> ``(42, 42)`` (Hydra passes lists)."""
    if isinstance(size, int):
        return (size, size)
    h, w = (int(s) for s in size)
    return (h, w)


def ints(x: int | Sequence[int]) -> tuple[int, ...]:
    return (int(x),) if isinstance(x, int) else tuple(int(v) for v in x)


class _Model(nn.Module):
    """Shared helpers of every stnlab model; ``input_ndim``: 2 for images, 3 for volumes."""

    input_ndim = 2

    def spatial_transformers(self) -> list[SpatialTransformer]:
        return spatial_transformers(self)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def _init_memory_format(self, channels_last: bool) -> None:
        """Channels-last conv weights (and inputs, see ``_to_memory_format``): on CPU the
        oneDNN kernels and max-pooling are ~20% faster this way; results are identical."""
        self.channels_last = bool(channels_last)
        if self.channels_last:
            self.to(memory_format=torch.channels_last)

    def _to_memory_format(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x


def _conv_plan(
    channels: int | Sequence[int], kernel_sizes: int | Sequence[int]
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``channels`` and ``kernel_sizes`` as tuples of one length (one kernel size serves all)."""
    channels, kernel_sizes = ints(channels), ints(kernel_sizes)
    if len(kernel_sizes) == 1:
        kernel_sizes = kernel_sizes * len(channels)
    if len(channels) != len(kernel_sizes):
        raise ValueError(f"channels {channels} and kernel_sizes {kernel_sizes} differ")
    return channels, kernel_sizes


_CHUNK_BYTES = 4 << 20


def _input_grad_depthwise(grad_out: torch.Tensor, weight: torch.Tensor, padding) -> torch.Tensor:
    """Gradient of a stride-1 convolution (2-D or 3-D) wrt its input, for few input channels.

    ``grad_x[:, i] = sum_o conv(grad_y[:, o], flip(w[o, i]))``: one depthwise convolution per
    input channel in channels-last layout, then a sum over the output channels. On CPU this is
    5-6x faster than the native backward when the input has one channel (the native kernel is
    poorly vectorised for a single output channel).
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
    """The ``forward`` of ``SmallInputConv2d`` / ``SmallInputConv3d`` (mixed into the conv)."""

    MAX_CHANNELS = 3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            x.requires_grad
            and torch.is_grad_enabled()
            and x.device.type == "cpu"
            and self.in_channels <= self.MAX_CHANNELS
            and self.groups == 1
            and all(s == 1 for s in self.stride)
            and all(d == 1 for d in self.dilation)
            and self.padding_mode == "zeros"
            and isinstance(self.padding, tuple)
        ):
            return _SmallInputConvFn.apply(x, self.weight, self.bias, self.padding)
        return super().forward(x)


class SmallInputConv2d(_SmallInputConv, nn.Conv2d):
    """``nn.Conv2d`` (stride 1, same parameters and state dict) whose backward computes the
    input gradient with depthwise convolutions when the input has at most
    ``MAX_CHANNELS`` channels and needs a gradient: the case of a CNN's first layer behind a
    spatial transformer, which otherwise dominates the transformer's training cost on CPU."""


class ConvBlock(nn.Sequential):
    """``conv k x k ('same' padding) -> [batch norm] -> ReLU -> max-pool``."""

    _conv: type[nn.Module] = SmallInputConv2d
    _max_pool: type[nn.Module] = nn.MaxPool2d
    _norm: type[nn.Module] = nn.BatchNorm2d

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, pool: int = 2,
        batch_norm: bool = False,
    ):
        layers: list[nn.Module] = [
            self._conv(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        ]
        if batch_norm:
            layers.append(self._norm(out_channels))
        layers.append(nn.ReLU(inplace=True))
        if pool > 1:
            layers.append(self._max_pool(pool))
        super().__init__(*layers)


def _conv_body(
    block: type[ConvBlock],
    in_channels: int,
    size: Sequence[int],
    num_classes: int,
    channels: int | Sequence[int],
    kernel_sizes: int | Sequence[int],
    pool: int,
    batch_norm: bool = False,
) -> tuple[nn.Sequential, nn.Sequential]:
    """The conv blocks and the linear classifier of ``CNN``, ``CNN3D`` and ``STCNN3D``."""
    channels, kernel_sizes = _conv_plan(channels, kernel_sizes)
    c, dims = int(in_channels), list(size)
    blocks = []
    for co, k in zip(channels, kernel_sizes, strict=True):
        blocks.append(block(c, co, k, pool, batch_norm))
        c, dims = co, [s // max(pool, 1) for s in dims]
    if min(dims) < 1:
        raise ValueError(f"input {tuple(size)} too small for {len(channels)} pools of {pool}")
    classifier = nn.Sequential(nn.Flatten(), nn.Linear(c * math.prod(dims), int(num_classes)))
    return nn.Sequential(*blocks), classifier


class CNN(_Model):
    """``conv 9x9 -> max-pool 2 -> conv 7x7 -> max-pool 2 -> linear classifier`` (ReLU).

    Three weight layers as in the paper, 'same' padding; widths default to ``(32, 64)``:
    167,050 parameters at 42x42 with 10 classes. ``channels_last`` (default) runs the
    convolutions in channels-last layout (faster on CPU, same results). ``batch_norm`` puts
    a batch norm after each convolution (off in the paper; the addition study needs it).
    """

    def __init__(
        self,
        in_channels: int,
        in_size: int | Sequence[int],
        num_classes: int,
        channels: int | Sequence[int] = (32, 64),
        kernel_sizes: int | Sequence[int] = (9, 7),
        pool: int = 2,
        channels_last: bool = True,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        self.features, self.classifier = _conv_body(
            ConvBlock, in_channels, size2(in_size), num_classes, channels, kernel_sizes, pool,
            batch_norm,
        )
        self._init_memory_format(channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(self._to_memory_format(x)))


class FCN(_Model):
    """``flatten -> FC hidden -> ReLU -> FC hidden -> ReLU -> linear classifier``.

    Widths default to ``(64, 64)`` (117,770 parameters at 42x42, 10 classes); ``batch_norm``
    puts a batch norm after each hidden layer's linear map (off in the paper).
    """

    def __init__(
        self,
        in_channels: int,
        in_size: int | Sequence[int],
        num_classes: int,
        hidden: int | Sequence[int] = (64, 64),
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        h, w = size2(in_size)
        layers, feat = dense_layers(int(in_channels) * h * w, hidden, batch_norm)
        self.features = nn.Sequential(nn.Flatten(), *layers)
        self.classifier = nn.Linear(feat, int(num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


__all__ = ["CNN", "FCN", "ConvBlock", "SmallInputConv2d"]
