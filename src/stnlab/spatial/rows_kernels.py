"""numba kernels of the rows sampler (``stnlab.spatial.rows_sampling``), imported only where
numba is installed: bilinear sampling with zero padding of a ``(B*H*W, C)`` row matrix at a
normalised grid ``(B, H', W', 2)``, one pass forward and one pass backward. Serial and GIL-free:
they run in the calling thread, and numba caches their machine code on disk after the first
compile. ``scale`` and ``offset`` turn a normalised coordinate ``g`` along an axis of ``n``
pixels into the pixel coordinate ``g * scale[axis] + offset[axis]``."""

from __future__ import annotations

import math

import numba
import numpy as np

_jit = numba.njit(nogil=True, cache=True, fastmath={"contract", "reassoc", "nsz", "arcp"})


@numba.njit(inline="always", cache=True)
def _corners(x, y, h, w, base, one):
    """The four neighbours' rows (clamped into the map), ``fx, fy`` and the neighbours' in-map
    masks (a neighbour outside reads 0: zero padding)."""
    x0, y0 = math.floor(x), math.floor(y)
    fx, fy = x - x0, y - y0
    ix, iy = int(x0), int(y0)
    zero = one - one
    mx0 = one if 0 <= ix < w else zero
    mx1 = one if 0 <= ix + 1 < w else zero
    my0 = one if 0 <= iy < h else zero
    my1 = one if 0 <= iy + 1 < h else zero
    cx0, cx1 = min(max(ix, 0), w - 1), min(max(ix + 1, 0), w - 1)
    r0, r1 = base + min(max(iy, 0), h - 1) * w, base + min(max(iy + 1, 0), h - 1) * w
    return (fx, fy, r0 + cx0, r0 + cx1, r1 + cx0, r1 + cx1,
            my0 * mx0, my0 * mx1, my1 * mx0, my1 * mx1)


@_jit
def forward(u, h, w, grid, scale, offset, out):
    """``out[q] = sum_k w_k(q) u[row_k(q)]``; ``out`` ``(B*H'*W', C)``."""
    c_n = u.shape[1]
    b_n, h_out, w_out = grid.shape[0], grid.shape[1], grid.shape[2]
    one = out.dtype.type(1)
    for b in range(b_n):
        for i in range(h_out):
            for j in range(w_out):
                q = (b * h_out + i) * w_out + j
                x = grid[b, i, j, 0] * scale[0] + offset[0]
                y = grid[b, i, j, 1] * scale[1] + offset[1]
                if not (math.isfinite(x) and math.isfinite(y)):
                    out[q, :] = np.nan  # as in grid_sample
                    continue
                fx, fy, i00, i01, i10, i11, m00, m01, m10, m11 = _corners(
                    x, y, h, w, b * h * w, one)
                w00 = (one - fy) * (one - fx) * m00
                w01 = (one - fy) * fx * m01
                w10 = fy * (one - fx) * m10
                w11 = fy * fx * m11
                for c in range(c_n):
                    out[q, c] = (w00 * u[i00, c] + w01 * u[i01, c] + w10 * u[i10, c]
                                 + w11 * u[i11, c])


@_jit
def backward(u, h, w, grid, scale, offset, g, gu, ggrid, need_u, need_grid):
    """Scatter ``w_k(q) g[q]`` into ``gu`` (zeroed by the caller); ``ggrid``: the weights'
    derivatives times ``<g[q], u[row_k(q)]>``, in normalised units."""
    c_n = u.shape[1]
    b_n, h_out, w_out = grid.shape[0], grid.shape[1], grid.shape[2]
    one = g.dtype.type(1)
    for b in range(b_n):
        for i in range(h_out):
            for j in range(w_out):
                q = (b * h_out + i) * w_out + j
                x = grid[b, i, j, 0] * scale[0] + offset[0]
                y = grid[b, i, j, 1] * scale[1] + offset[1]
                if not (math.isfinite(x) and math.isfinite(y)):
                    if need_grid:
                        ggrid[b, i, j, 0] = ggrid[b, i, j, 1] = np.nan
                    continue
                fx, fy, i00, i01, i10, i11, m00, m01, m10, m11 = _corners(
                    x, y, h, w, b * h * w, one)
                if need_grid:
                    d00 = d01 = d10 = d11 = one - one
                    for c in range(c_n):
                        gc = g[q, c]
                        d00 += gc * u[i00, c]
                        d01 += gc * u[i01, c]
                        d10 += gc * u[i10, c]
                        d11 += gc * u[i11, c]
                    d00, d01, d10, d11 = d00 * m00, d01 * m01, d10 * m10, d11 * m11
                    ggrid[b, i, j, 0] = ((one - fy) * (d01 - d00) + fy * (d11 - d10)) * scale[0]
                    ggrid[b, i, j, 1] = ((one - fx) * (d10 - d00) + fx * (d11 - d01)) * scale[1]
                if need_u:
                    w00 = (one - fy) * (one - fx) * m00
                    w01 = (one - fy) * fx * m01
                    w10 = fy * (one - fx) * m10
                    w11 = fy * fx * m11
                    # one loop a neighbour: two neighbours may share a row (clamped at an
                    # edge), which would keep a joint loop from vectorising
                    for c in range(c_n):
                        gu[i00, c] += w00 * g[q, c]
                    for c in range(c_n):
                        gu[i01, c] += w01 * g[q, c]
                    for c in range(c_n):
                        gu[i10, c] += w10 * g[q, c]
                    for c in range(c_n):
                        gu[i11, c] += w11 * g[q, c]
