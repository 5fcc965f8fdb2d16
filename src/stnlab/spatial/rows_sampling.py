"""Bilinear sampling (zero padding) of a channels-last CPU map as rows of its ``(B*H*W, C)``
view: each output pixel is the weighted sum of its four neighbours' channel vectors.

CPU ``grid_sample`` reads and writes NCHW; here the output and the map's gradient stay
channels-last like the convolutions around them. Two kernels, both with ``grid_sample``'s values
and gradients up to float rounding:

- numba (float32 and float64, eager mode; ``rows_kernels.py``): each pixel's neighbours found
  once, a gather forward, a backward that scatters the map's gradient and takes the grid's
  from the same rows. ST-CNN Multi's sampler forward + backward on its 32-channel 32x32 map,
  1 thread: 28.6 -> 6.8 ms (``benchmarks/bench_sampler.py``; docs/performance.md).
- ``F.embedding_bag`` over the rows, the bilinear weights as per-sample weights (autograd gives
  both gradients): every other case (half precision, ``torch.compile`` tracing, numba missing).
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from .transform_base import ALIGN_CORNERS


def _pixel_affine(h: int, w: int) -> tuple[list[float], list[float]]:
    """``scale, offset`` (x, y) that turn normalised grid coordinates into pixel coordinates
    of an ``h x w`` map: ``pixel = g * scale + offset`` (the library's ``ALIGN_CORNERS``)."""
    if ALIGN_CORNERS:
        return [(w - 1) / 2, (h - 1) / 2], [(w - 1) / 2, (h - 1) / 2]
    return [w / 2, h / 2], [(w - 1) / 2, (h - 1) / 2]


def _embedding_bag_rows(u: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """The fallback: one ``embedding_bag`` over the rows (its backward sorts the indices)."""
    b, c, h, w = u.shape
    rows = u.permute(0, 2, 3, 1).reshape(b * h * w, c)  # a view of a channels-last map
    scale, offset = _pixel_affine(h, w)
    x, y = (grid[..., k] * scale[k] + offset[k] for k in (0, 1))
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
    """The numba kernels' module, or ``None`` without numba (the ``embedding_bag`` path)."""
    try:
        from . import rows_kernels
    except ImportError:  # numba is a dependency: only a hand-made environment lacks it
        return None
    except RuntimeError as err:  # e.g. numba finds no writable folder for its cache
        warnings.warn(f"stnlab's numba sampler kernels are unavailable ({err}); sampling "
                      "channels-last maps falls back to the slower embedding_bag path "
                      "(set NUMBA_CACHE_DIR to a writable folder)", RuntimeWarning,
                      stacklevel=2)
        return None
    return rows_kernels


def _compiling() -> bool:
    """Inside ``torch.compile`` tracing (which cannot trace numba): torch >= 2.3 says so."""
    is_compiling = getattr(torch.compiler, "is_compiling", None)
    return bool(is_compiling and is_compiling())


def _rows(t: torch.Tensor):
    """A channels-last ``(B, C, H, W)`` tensor as its ``(B*H*W, C)`` array (no copy)."""
    return t.detach().permute(0, 2, 3, 1).reshape(-1, t.shape[1]).numpy()


class _NumbaRows(torch.autograd.Function):
    """The numba kernels under autograd: the map's gradient comes back channels-last, the
    grid's in the grid's own layout."""

    @staticmethod
    def forward(ctx, u, grid):
        b, c, h, w = u.shape
        kernels = _kernels()
        n = grid.shape[0] * grid.shape[1] * grid.shape[2]
        index = torch.empty(n, 4, dtype=torch.int32)
        weight, mask = torch.empty(n, 4, dtype=u.dtype), torch.empty(n, 4, dtype=u.dtype)
        frac = torch.empty(n, 2, dtype=u.dtype)
        dt = weight.numpy().dtype
        scale, offset = (np.array(v, dtype=dt) for v in _pixel_affine(h, w))
        kernels.neighbours(grid.detach().numpy(), h, w, scale, offset, index.numpy(),
                           weight.numpy(), frac.numpy(), mask.numpy())
        out = torch.empty(b, c, *grid.shape[1:3], dtype=u.dtype,
                          memory_format=torch.channels_last)
        kernels.forward(_rows(u), index.numpy(), weight.numpy(), _rows(out))
        ctx.save_for_backward(u, grid, index, weight, frac, mask)
        ctx.scale = scale
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        u, grid, index, weight, frac, mask = (t.detach() for t in ctx.saved_tensors)
        need_u, need_grid = ctx.needs_input_grad
        rows = _rows(u)
        gu = torch.zeros_like(u, memory_format=torch.channels_last) if need_u else None
        ggrid = torch.empty_like(grid) if need_grid else grid[:0]
        _kernels().backward(rows, index.numpy(), weight.numpy(), frac.numpy(), mask.numpy(),
                            ctx.scale, _rows(grad.contiguous(memory_format=torch.channels_last)),
                            _rows(gu) if need_u else rows[:0], ggrid.numpy(), need_u, need_grid)
        return gu, (ggrid if need_grid else None)


def bilinear_rows(u: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Sample a channels-last CPU map ``u`` ``(B, C, H, W)`` at normalised ``grid``
    ``(B, H', W', 2)`` of ``u``'s dtype (bilinear, zero padding) -> a channels-last
    ``(B, C, H', W')``."""
    if (u.dtype in (torch.float32, torch.float64) and u.numel() > 0 and grid.numel() > 0
            and not _compiling() and _kernels() is not None):
        return _NumbaRows.apply(u, grid)
    return _embedding_bag_rows(u, grid)


__all__ = ["bilinear_rows"]
