"""Geometry shared by the recipes: pixel grids, coordinate maps, warping by per-sample
matrices, ink boxes (the conventions are in the package docstring)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

DIGIT_SIZE = 28
"""Side of an MNIST digit, the input size of every recipe."""

INK_THRESHOLD = 0.1
"""A pixel above this value is ink: used to find a digit's bounding box."""

_BASE_CACHE: dict[tuple[int, int, str], Tensor] = {}


def pixel_grid(height: int, width: int, device: torch.device) -> Tensor:
    """``(H*W, 3)`` float32 rows ``(j, i, 1)``: the pixel indices of an image, homogeneous."""
    key = (height, width, str(device))
    base = _BASE_CACHE.get(key)
    if base is None:
        ii, jj = torch.meshgrid(
            torch.arange(height, dtype=torch.float32),
            torch.arange(width, dtype=torch.float32),
            indexing="ij",
        )
        base = torch.stack([jj, ii, torch.ones_like(ii)], dim=-1).reshape(-1, 3).to(device)
        if len(_BASE_CACHE) < 64:
            _BASE_CACHE[key] = base
    return base


def pixels_to_centred(size: tuple[int, int]) -> Tensor:
    """3x3 float64 map from pixel indices ``(j, i, 1)`` to coordinates about the centre."""
    h, w = size
    m = torch.eye(3, dtype=torch.float64)
    m[0, 2] = -(w - 1) / 2.0
    m[1, 2] = -(h - 1) / 2.0
    return m


def centred_to_normalised(size: tuple[int, int]) -> Tensor:
    """3x3 float64 map from centred pixel coordinates to grid_sample's [-1, 1]
    (``align_corners=False``: the image edges, not the edge pixel centres, are at +-1)."""
    h, w = size
    return torch.diag(torch.tensor([2.0 / w, 2.0 / h, 1.0], dtype=torch.float64))


def sample_bilinear(x: Tensor, grid: Tensor) -> Tensor:
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def grid_from_maps(
    full: Tensor, out_size: tuple[int, int], device: torch.device, projective: bool
) -> Tensor:
    """Sampling grid ``(B, H, W, 2)`` of per-sample 3x3 maps ``full`` (float64, CPU) from
    output pixel indices ``(j, i, 1)`` to grid_sample units of the source. Element-wise, so
    each point's value does not depend on the batch size (chunking independence)."""
    h, w = out_size
    g = (full if projective else full[:, :2]).to(device=device, dtype=torch.float32)
    jj = torch.arange(w, dtype=torch.float32, device=device)
    ii = torch.arange(h, dtype=torch.float32, device=device)
    pts = g[:, :, 0, None, None] * jj + (
        g[:, :, 1, None, None] * ii[:, None] + g[:, :, 2, None, None]
    )
    if projective:  # (B, 3, H, W)
        z = pts[:, 2:]
        # A point with z <= 0 lies beyond the horizon: send it outside the source (black).
        ok = z > 1e-6
        pts = torch.where(ok, pts[:, :2] / torch.where(ok, z, torch.ones_like(z)), 4.0)
    return pts.permute(0, 2, 3, 1).contiguous()


def warp_by_matrix(
    x: Tensor, matrix: Tensor, out_size: tuple[int, int], *, projective: bool = False
) -> Tensor:
    """Warp ``x`` with per-sample 3x3 maps ``matrix`` (float64, CPU) that take centred
    *output* coordinates to centred *source* coordinates."""
    in_size = (x.shape[-2], x.shape[-1])
    full = centred_to_normalised(in_size) @ matrix @ pixels_to_centred(out_size)
    return sample_bilinear(x, grid_from_maps(full, out_size, x.device, projective))


def similarity_matrix(angle_deg: Tensor, scale: Tensor, shift: Tensor) -> Tensor:
    """Inverse (output -> source) 3x3 maps of ``q = scale * R(angle) p + shift``."""
    a = torch.deg2rad(angle_deg)
    c, s = torch.cos(a) / scale, torch.sin(a) / scale
    m = torch.zeros(angle_deg.shape[0], 3, 3, dtype=torch.float64)
    # R(angle) = [[cos, sin], [-sin, cos]] turns counter-clockwise on screen (y points down);
    # its inverse is the transpose.
    m[:, 0, 0], m[:, 0, 1] = c, -s
    m[:, 1, 0], m[:, 1, 1] = s, c
    m[:, 0, 2] = -(c * shift[:, 0] - s * shift[:, 1])
    m[:, 1, 2] = -(s * shift[:, 0] + c * shift[:, 1])
    m[:, 2, 2] = 1.0
    return m


def similarity_warp(
    x: Tensor, angle_deg: Tensor, scale: Tensor, out_size: tuple[int, int]
) -> Tensor:
    """Rotate each image by ``angle_deg`` and scale it by ``scale`` (per sample) about its
    centre, onto an ``out_size`` image with the same centre: no shift, so angle 0 and scale 1
    onto the input's size return the input exactly."""
    zero = torch.zeros(angle_deg.shape[0], 2, dtype=torch.float64)
    return warp_by_matrix(x, similarity_matrix(angle_deg.double(), scale.double(), zero), out_size)


def ink_box(x: Tensor) -> Tensor:
    """Inclusive ink bounding box ``(y0, y1, x0, x1)`` of each image, ``(B, 4)`` int64 on the
    CPU; an image without ink gets the full frame."""
    ink = x.amax(dim=1) > INK_THRESHOLD  # (B, H, W)
    h, w = ink.shape[-2:]
    rows, cols = ink.any(dim=2), ink.any(dim=1)

    def first_last(m: Tensor, n: int) -> tuple[Tensor, Tensor]:
        idx = torch.arange(n, device=m.device)
        has = m.any(dim=1)
        first = torch.where(m, idx, n).amin(dim=1)
        last = torch.where(m, idx, -1).amax(dim=1)
        return torch.where(has, first, 0), torch.where(has, last, n - 1)

    y0, y1 = first_last(rows, h)
    x0, x1 = first_last(cols, w)
    return torch.stack([y0, y1, x0, x1], dim=1).cpu()


def fit_shift(
    box: Tensor, linear: Tensor, in_size: tuple[int, int], canvas: tuple[int, int], u: Tensor
) -> Tensor:
    """Centred canvas position of the source centre so that the ink box, mapped by the 2x2
    ``linear`` part, lies inside the canvas; ``u`` in [0, 1) picks the spot uniformly along
    each axis. Where the digit cannot fit, it is centred (clipped evenly on both sides)."""
    h, w = in_size
    box = box.to(torch.float64)
    y0 = box[:, 0] - 0.5 - (h - 1) / 2.0
    y1 = box[:, 1] + 0.5 - (h - 1) / 2.0
    x0 = box[:, 2] - 0.5 - (w - 1) / 2.0
    x1 = box[:, 3] + 0.5 - (w - 1) / 2.0
    corners = torch.stack(
        [
            torch.stack([x0, y0], 1),
            torch.stack([x1, y0], 1),
            torch.stack([x0, y1], 1),
            torch.stack([x1, y1], 1),
        ],
        dim=2,
    )  # (B, 2, 4)
    mapped = linear @ corners
    half = torch.tensor([canvas[1] / 2.0, canvas[0] / 2.0], dtype=torch.float64)
    lo = -half - mapped.amin(dim=2)
    hi = half - mapped.amax(dim=2)
    return torch.where(hi >= lo, lo + u * (hi - lo), (lo + hi) / 2.0)
