"""Bilinear sampling (zero padding) of a channels-last CPU map as rows of its ``(B*H*W, C)``
view: each output pixel is the weighted sum of its four neighbours' channel vectors.

CPU ``grid_sample`` reads and writes NCHW; here the output and the map's gradient stay
channels-last like the convolutions around them. Two implementations, both with
``grid_sample``'s values and gradients up to float rounding (tests/test_spatial.py):

- the numba kernels of ``stnlab.spatial._cpu`` (the optional ``stnlab[cpu]`` extra): float32
  and float64 in eager mode. ST-CNN Multi's sampler forward + backward on its 32-channel 32x32
  map, 1 thread: 6.8 ms (``benchmarks/bench_sampler.py``).
- pure PyTorch, ``F.embedding_bag`` over the rows with the bilinear weights as per-sample
  weights (autograd gives both gradients): everything else (numba not installed,
  ``STNLAB_NUMBA=0``, half precision, ``torch.compile`` tracing). 28.6 ms on that map, against
  40.0 ms for ``grid_sample`` through an NCHW copy: the faster of the two pure-PyTorch paths.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import _cpu
from .transform_base import _pixel_affine

KERNELS: tuple[str, ...] = ("auto", "numba", "torch")


def _embedding_bag_rows(u: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """The pure-PyTorch path: one ``embedding_bag`` over the rows (its backward sorts the
    indices)."""
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


def _compiling() -> bool:
    """Inside ``torch.compile`` tracing (which cannot trace numba): torch >= 2.3 says so."""
    is_compiling = getattr(torch.compiler, "is_compiling", None)
    return bool(is_compiling and is_compiling())


def bilinear_rows(u: torch.Tensor, grid: torch.Tensor, kernels: str = "auto") -> torch.Tensor:
    """Sample a channels-last CPU map ``u`` ``(B, C, H, W)`` at normalised ``grid``
    ``(B, H', W', 2)`` of ``u``'s dtype (bilinear, zero padding) -> a channels-last
    ``(B, C, H', W')``.

    ``kernels``: ``"auto"`` the numba kernels where they run (else pure PyTorch), ``"torch"``
    always pure PyTorch, ``"numba"`` the numba kernels or an error saying why not."""
    if kernels not in KERNELS:
        raise ValueError(f"unknown kernels {kernels!r}; valid names: {', '.join(KERNELS)}")
    if kernels == "torch":
        return _embedding_bag_rows(u, grid)
    numba_rows = _cpu.load(respect_switch=kernels == "auto")
    fits = (u.dtype in (torch.float32, torch.float64) and u.numel() > 0 and grid.numel() > 0
            and not _compiling())
    if numba_rows is not None and fits:
        return numba_rows.NumbaRows.apply(u, grid)
    if kernels == "numba":
        why = ("numba is not installed (pip install 'stnlab[cpu]')" if numba_rows is None else
               "they take non-empty float32/float64 tensors in eager mode")
        raise RuntimeError(f"the numba sampler kernels cannot run: {why}")
    return _embedding_bag_rows(u, grid)


__all__ = ["KERNELS", "bilinear_rows"]
