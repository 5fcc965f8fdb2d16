"""The numba kernels (``kernels.py``) under autograd: ``NumbaRows.apply(u, grid)`` samples a
channels-last float32/float64 CPU map ``u`` ``(B, C, H, W)`` at a normalised ``grid``
``(B, H', W', 2)`` of its dtype (bilinear, zero padding). The map's gradient comes back
channels-last, the grid's in the grid's own layout. Importing this module imports numba."""

from __future__ import annotations

import numpy as np
import torch

from ..transform_base import ALIGN_CORNERS
from . import kernels


def _pixel_affine(h: int, w: int) -> tuple[list[float], list[float]]:
    """``scale, offset`` (x, y) that turn normalised grid coordinates into pixel coordinates
    of an ``h x w`` map: ``pixel = g * scale + offset`` (the library's ``ALIGN_CORNERS``)."""
    if ALIGN_CORNERS:
        return [(w - 1) / 2, (h - 1) / 2], [(w - 1) / 2, (h - 1) / 2]
    return [w / 2, h / 2], [(w - 1) / 2, (h - 1) / 2]


def _rows(t: torch.Tensor):
    """A channels-last ``(B, C, H, W)`` tensor as its ``(B*H*W, C)`` array (no copy)."""
    return t.detach().permute(0, 2, 3, 1).reshape(-1, t.shape[1]).numpy()


class NumbaRows(torch.autograd.Function):
    """Each output pixel's four neighbours found once; a gather forward; a backward that
    scatters the map's gradient and takes the grid's from the same rows."""

    @staticmethod
    def forward(ctx, u, grid):
        b, c, h, w = u.shape
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
        kernels.backward(rows, index.numpy(), weight.numpy(), frac.numpy(), mask.numpy(),
                         ctx.scale, _rows(grad.contiguous(memory_format=torch.channels_last)),
                         _rows(gu) if need_u else rows[:0], ggrid.numpy(), need_u, need_grid)
        return gu, (ggrid if need_grid else None)


__all__ = ["NumbaRows"]
