"""numba kernels of the rows sampler (``stnlab.spatial.rows_sampling``), imported only where
numba is installed: bilinear sampling with zero padding of a ``(B*H*W, C)`` row matrix, one
pass forward and one pass backward. Serial and GIL-free: they run in the calling thread, and
numba caches their machine code on disk after the first compile."""

from __future__ import annotations

import math

import numba
import numpy as np

_jit = numba.njit(nogil=True, cache=True, fastmath={"contract", "reassoc", "nsz", "arcp"})


@numba.njit(inline="always", cache=True)
def _corners(x, y, h, w, base, one):
    """The four neighbours' rows (clamped into the map) and their bilinear weights (0 for
    a neighbour outside: zero padding), with ``fx, fy`` and the in-map masks."""
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
def forward(u, h, w, px, py, out, one):
    """``out[q] = sum_k w_k(q) u[row_k(q)]``; ``u`` ``(B*H*W, C)``, ``px, py`` ``(B*Q,)``."""
    c_n = u.shape[1]
    b_n = u.shape[0] // (h * w)
    q_n = px.shape[0] // b_n
    for b in range(b_n):
        for q in range(b * q_n, (b + 1) * q_n):
            x, y = px[q], py[q]
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
def backward(u, h, w, px, py, g, gu, gx, gy, need_u, need_xy, one):
    """Scatter ``w_k g[q]`` into ``gu`` (zeroed by the caller); ``gx, gy``: the weights'
    derivatives times ``<g[q], u[row_k]>``."""
    c_n = u.shape[1]
    b_n = u.shape[0] // (h * w)
    q_n = px.shape[0] // b_n
    for b in range(b_n):
        for q in range(b * q_n, (b + 1) * q_n):
            x, y = px[q], py[q]
            if not (math.isfinite(x) and math.isfinite(y)):
                gx[q], gy[q] = np.nan, np.nan
                continue
            fx, fy, i00, i01, i10, i11, m00, m01, m10, m11 = _corners(
                x, y, h, w, b * h * w, one)
            if need_xy:
                d00 = d01 = d10 = d11 = one - one
                for c in range(c_n):
                    gc = g[q, c]
                    d00 += gc * u[i00, c]
                    d01 += gc * u[i01, c]
                    d10 += gc * u[i10, c]
                    d11 += gc * u[i11, c]
                d00, d01, d10, d11 = d00 * m00, d01 * m01, d10 * m10, d11 * m11
                gx[q] = (one - fy) * (d01 - d00) + fy * (d11 - d10)
                gy[q] = (one - fx) * (d10 - d00) + fx * (d11 - d01)
            if need_u:
                w00 = (one - fy) * (one - fx) * m00
                w01 = (one - fy) * fx * m01
                w10 = fy * (one - fx) * m10
                w11 = fy * fx * m11
                for c in range(c_n):
                    gc = g[q, c]
                    gu[i00, c] += w00 * gc
                    gu[i01, c] += w01 * gc
                    gu[i10, c] += w10 * gc
                    gu[i11, c] += w11 * gc
