"""Bilinear sampling (zero padding) of a channels-last CPU map as rows of its ``(B*H*W, C)``
view: each output pixel is the weighted sum of its four neighbours' channel vectors.

CPU ``grid_sample`` reads and writes NCHW; here the output and the map's gradient stay
channels-last like the convolutions around them. Two kernels, both with ``grid_sample``'s values
and gradients up to float rounding:

- numba (float32 and float64, eager mode): one pass forward; one pass backward that scatters the
  map's gradient and takes the coordinates' gradient from the same four rows. ST-CNN Multi's
  sampler forward + backward on its 32-channel 32x32 map, 1 thread: 35 -> 8 ms
  (docs/performance.md, "Sequence models").
- ``F.embedding_bag`` over the rows, the bilinear weights as per-sample weights (autograd gives
  both gradients): every other case (half precision, ``torch.compile`` tracing, numba missing).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from .transforms import ALIGN_CORNERS


def _pixel(coord: torch.Tensor, size: int) -> torch.Tensor:
    """Normalised grid coordinates -> pixel coordinates along an axis of ``size`` pixels."""
    if ALIGN_CORNERS:
        return (coord + 1) * ((size - 1) / 2)
    return ((coord + 1) * size - 1) / 2


def _embedding_bag_rows(u: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The fallback: one ``embedding_bag`` over the rows (its backward sorts the indices)."""
    b, c, h, w = u.shape
    rows = u.permute(0, 2, 3, 1).reshape(b * h * w, c)  # a view of a channels-last map
    x0, y0 = x.detach().floor(), y.detach().floor()
    fx, fy = x - x0, y - y0
    x0, y0 = x0.long(), y0.long()
    start = torch.arange(b, device=u.device).view(b, 1, 1) * (h * w)
    index, weight = [], []
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            xi, yi = x0 + dx, y0 + dy
            inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)  # outside reads 0
            index.append(start + yi.clamp(0, h - 1) * w + xi.clamp(0, w - 1))
            weight.append(wy * wx * inside)  # a NaN coordinate stays NaN, as in grid_sample
    out = F.embedding_bag(torch.stack(index, -1).flatten(0, 2), rows, mode="sum",
                          per_sample_weights=torch.stack(weight, -1).flatten(0, 2))
    return out.view(b, *x.shape[1:], c).permute(0, 3, 1, 2)


@functools.cache
def _kernels():
    """The numba ``(forward, backward)`` kernels, or ``None`` without numba."""
    try:
        from . import rows_kernels
    except ImportError:  # numba missing: the embedding_bag path
        return None
    return rows_kernels.forward, rows_kernels.backward


def _rows(t: torch.Tensor):
    """A channels-last ``(B, C, H, W)`` tensor as its ``(B*H*W, C)`` array (no copy)."""
    return t.detach().permute(0, 2, 3, 1).reshape(-1, t.shape[1]).numpy()


class _NumbaRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, x, y):
        b, c, h, w = u.shape
        forward, _ = _kernels()
        x, y = x.contiguous(), y.contiguous()
        out = torch.empty(b, c, *x.shape[1:], dtype=u.dtype, memory_format=torch.channels_last)
        rows = _rows(u)
        forward(rows, h, w, x.detach().view(-1).numpy(), y.detach().view(-1).numpy(),
                _rows(out), rows.dtype.type(1))
        ctx.save_for_backward(u, x, y)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        u, x, y = ctx.saved_tensors
        need_u, need_x, need_y = ctx.needs_input_grad
        _, backward = _kernels()
        g = grad.contiguous(memory_format=torch.channels_last)
        rows = _rows(u)
        gu = torch.zeros_like(u, memory_format=torch.channels_last) if need_u else None
        gx, gy = torch.empty_like(x), torch.empty_like(y)
        backward(rows, u.shape[2], u.shape[3], x.view(-1).numpy(), y.view(-1).numpy(),
                 _rows(g), _rows(gu) if need_u else rows[:0], gx.view(-1).numpy(),
                 gy.view(-1).numpy(), need_u, need_x or need_y, rows.dtype.type(1))
        return gu, (gx if need_x else None), (gy if need_y else None)


def bilinear_rows(u: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Sample a channels-last CPU map ``u`` ``(B, C, H, W)`` at normalised ``grid``
    ``(B, H', W', 2)`` (bilinear, zero padding) -> a channels-last ``(B, C, H', W')``."""
    x, y = _pixel(grid[..., 0], u.shape[3]), _pixel(grid[..., 1], u.shape[2])
    if (u.dtype in (torch.float32, torch.float64) and u.numel() > 0 and x.numel() > 0
            and not torch.compiler.is_compiling() and _kernels() is not None):
        return _NumbaRows.apply(u, x, y)
    return _embedding_bag_rows(u, x, y)


__all__ = ["bilinear_rows"]
