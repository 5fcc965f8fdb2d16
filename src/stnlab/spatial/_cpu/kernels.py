"""numba kernels of the rows sampler (under autograd in ``rows.py``), imported only where numba
is installed: bilinear sampling with zero padding of a ``(B*H*W, C)`` row matrix at a
normalised grid ``(B, H', W', 2)``. Serial and GIL-free: they run in the calling thread, and
numba caches their machine code on disk after the first compile.

``neighbours`` finds each output pixel's four neighbour rows and bilinear weights once, in a
branch-free loop; ``forward`` and ``backward`` then only gather and scatter rows. ``scale`` and
``offset`` turn a normalised coordinate ``g`` along an axis into the pixel coordinate
``g * scale[axis] + offset[axis]``."""

from __future__ import annotations

import math

import numba
import numpy as np

_jit = numba.njit(nogil=True, cache=True, fastmath={"contract", "reassoc", "nsz", "arcp"})


@_jit
def neighbours(grid, h, w, scale, offset, index, weight, frac, mask):
    """Per output pixel ``q``: ``index[q]`` the rows of its neighbours (x0, y0), (x1, y0),
    (x0, y1), (x1, y1), clamped into the map; ``mask[q]`` 1 for a neighbour inside the map
    and 0 outside (zero padding); ``frac[q]`` its ``fx, fy``; ``weight[q]`` the bilinear
    weights, masked, and NaN for a non-finite coordinate (as ``grid_sample`` gives)."""
    b_n, h_out, w_out = grid.shape[0], grid.shape[1], grid.shape[2]
    one = weight.dtype.type(1)
    zero = one - one
    for b in range(b_n):
        base = b * h * w
        for i in range(h_out):
            for j in range(w_out):
                q = (b * h_out + i) * w_out + j
                x = grid[b, i, j, 0] * scale[0] + offset[0]
                y = grid[b, i, j, 1] * scale[1] + offset[1]
                bad = not (x - x == zero and y - y == zero)  # NaN or infinite
                # past one pixel outside every neighbour is outside: clamp before the int cast
                x = zero if bad else min(max(x, -2 * one), w + one)
                y = zero if bad else min(max(y, -2 * one), h + one)
                x0, y0 = math.floor(x), math.floor(y)
                fx, fy = x - x0, y - y0
                ix, iy = int(x0), int(y0)
                mx0 = one if 0 <= ix < w else zero
                mx1 = one if 0 <= ix + 1 < w else zero
                my0 = one if 0 <= iy < h else zero
                my1 = one if 0 <= iy + 1 < h else zero
                cx0, cx1 = min(max(ix, 0), w - 1), min(max(ix + 1, 0), w - 1)
                r0 = base + min(max(iy, 0), h - 1) * w
                r1 = base + min(max(iy + 1, 0), h - 1) * w
                index[q, 0], index[q, 1] = r0 + cx0, r0 + cx1
                index[q, 2], index[q, 3] = r1 + cx0, r1 + cx1
                mask[q, 0], mask[q, 1] = my0 * mx0, my0 * mx1
                mask[q, 2], mask[q, 3] = my1 * mx0, my1 * mx1
                nan = np.nan if bad else one
                weight[q, 0] = (one - fy) * (one - fx) * mask[q, 0] * nan
                weight[q, 1] = (one - fy) * fx * mask[q, 1] * nan
                weight[q, 2] = fy * (one - fx) * mask[q, 2] * nan
                weight[q, 3] = fy * fx * mask[q, 3] * nan
                frac[q, 0], frac[q, 1] = fx, fy


@_jit
def forward(u, index, weight, out):
    """``out[q] = sum_k weight[q, k] u[index[q, k]]``."""
    c_n = u.shape[1]
    for q in range(out.shape[0]):
        i00, i01, i10, i11 = index[q, 0], index[q, 1], index[q, 2], index[q, 3]
        w00, w01, w10, w11 = weight[q, 0], weight[q, 1], weight[q, 2], weight[q, 3]
        for c in range(c_n):
            out[q, c] = w00 * u[i00, c] + w01 * u[i01, c] + w10 * u[i10, c] + w11 * u[i11, c]


@_jit
def backward(u, index, weight, frac, mask, scale, g, gu, ggrid, need_u, need_grid):
    """Scatter ``weight[q, k] g[q]`` into ``gu`` (zeroed by the caller); ``ggrid`` (the grid's
    shape, any strides): the weights' derivatives times ``<g[q], u[index[q, k]]>``, in
    normalised units."""
    c_n = u.shape[1]
    one = g.dtype.type(1)
    h_out, w_out = ggrid.shape[1], ggrid.shape[2]
    for b in range(g.shape[0] // (h_out * w_out)):
        for i in range(h_out):
            for j in range(w_out):
                q = (b * h_out + i) * w_out + j
                if weight[q, 0] != weight[q, 0]:  # a non-finite coordinate
                    if need_grid:
                        ggrid[b, i, j, 0] = ggrid[b, i, j, 1] = np.nan
                    continue
                i00, i01, i10, i11 = index[q, 0], index[q, 1], index[q, 2], index[q, 3]
                if need_grid:
                    d00 = d01 = d10 = d11 = one - one
                    for c in range(c_n):
                        gc = g[q, c]
                        d00 += gc * u[i00, c]
                        d01 += gc * u[i01, c]
                        d10 += gc * u[i10, c]
                        d11 += gc * u[i11, c]
                    d00, d01 = d00 * mask[q, 0], d01 * mask[q, 1]
                    d10, d11 = d10 * mask[q, 2], d11 * mask[q, 3]
                    fx, fy = frac[q, 0], frac[q, 1]
                    ggrid[b, i, j, 0] = ((one - fy) * (d01 - d00) + fy * (d11 - d10)) * scale[0]
                    ggrid[b, i, j, 1] = ((one - fx) * (d10 - d00) + fx * (d11 - d01)) * scale[1]
                if need_u:
                    # one loop a neighbour: two neighbours may share a row (clamped at an edge),
                    # which would keep a joint loop from vectorising
                    w00, w01, w10, w11 = weight[q, 0], weight[q, 1], weight[q, 2], weight[q, 3]
                    for c in range(c_n):
                        gu[i00, c] += w00 * g[q, c]
                    for c in range(c_n):
                        gu[i01, c] += w01 * g[q, c]
                    for c in range(c_n):
                        gu[i10, c] += w10 * g[q, c]
                    for c in range(c_n):
                        gu[i11, c] += w11 * g[q, c]
