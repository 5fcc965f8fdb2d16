"""The library's one sampler: every image warp in stnlab goes through :func:`sample`."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .layout import is_channels_last_map, nchw_keeping_grad_layout
from .transforms import ALIGN_CORNERS

SAMPLERS: tuple[str, ...] = ("bilinear", "nearest", "bicubic")
PADDINGS: tuple[str, ...] = ("zeros", "border")


def check_sampler(mode: str, padding: str = "zeros") -> None:
    """Raise ``ValueError`` naming the valid choices for an unknown mode or padding."""
    if mode not in SAMPLERS:
        raise ValueError(f"unknown sampler {mode!r}; valid names: {', '.join(SAMPLERS)}")
    if padding not in PADDINGS:
        raise ValueError(f"unknown padding {padding!r}; valid names: {', '.join(PADDINGS)}")


def _pixel(coord: torch.Tensor, size: int) -> torch.Tensor:
    """Normalised grid coordinates -> pixel coordinates along an axis of ``size`` pixels."""
    if ALIGN_CORNERS:
        return (coord + 1) * ((size - 1) / 2)
    return ((coord + 1) * size - 1) / 2


def _bilinear_rows(u: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Bilinear sampling with zero padding of a channels-last ``u`` as one ``embedding_bag``:
    each output pixel is the weighted sum of its four neighbours' channel vectors (rows of the
    map's ``(B*H*W, C)`` view). Same values and gradients as ``F.grid_sample`` up to float
    rounding; but CPU ``grid_sample`` reads and writes NCHW, while here the output and the
    map's gradient stay channels-last like the convolutions around them, and the fused gather
    is cheaper (ST-CNN Multi's CPU step, docs/performance.md)."""
    b, c, h, w = u.shape
    rows = u.permute(0, 2, 3, 1).reshape(b * h * w, c)  # a view of a channels-last map
    x, y = _pixel(grid[..., 0], w), _pixel(grid[..., 1], h)
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
    return out.view(b, *grid.shape[1:3], c).permute(0, 3, 1, 2)


def sample(
    u: torch.Tensor, grid: torch.Tensor, mode: str = "bilinear", padding: str = "zeros"
) -> torch.Tensor:
    """Sample ``u`` ``(B, C, H, W)`` at ``grid`` ``(B, H', W', 2)`` -> ``(B, C, H', W')``.

    Grid coordinates are normalised (``x`` along the width, ``y`` along the height, ``-1``/``1``
    the image edges: ``align_corners=ALIGN_CORNERS``). ``padding`` is ``"zeros"`` (outside the
    image reads 0) or ``"border"`` (edge pixels are repeated).

    Volumes: ``u`` ``(B, C, D, H, W)`` at ``grid`` ``(B, D', H', W', 3)`` (``x, y, z``; ``z``
    along the depth) -> ``(B, C, D', H', W')``; ``bilinear`` is then trilinear, and
    ``bicubic`` does not exist.
    """
    check_sampler(mode, padding)
    if u.dim() not in (4, 5):
        raise ValueError(
            f"sample expects an image batch (B, C, H, W) or a volume batch (B, C, D, H, W), "
            f"got {tuple(u.shape)}"
        )
    n = u.dim() - 2
    if grid.dim() != u.dim() or grid.shape[-1] != n or grid.shape[0] != u.shape[0]:
        axes = "H, W" if n == 2 else "D, H, W"
        raise ValueError(
            f"sample expects a grid (B={u.shape[0]}, {axes}, {n}), got {tuple(grid.shape)}"
        )
    if n == 3 and mode == "bicubic":
        raise ValueError("bicubic sampling is 2-D only; for volumes use bilinear or nearest")
    if grid.dtype != u.dtype:
        grid = grid.to(u.dtype)
    if u.device.type == "cpu" and n == 2 and is_channels_last_map(u):
        if mode == "bilinear" and padding == "zeros":
            return _bilinear_rows(u, grid)
        u = nchw_keeping_grad_layout(u)  # the other modes: grid_sample
    return F.grid_sample(u, grid, mode=mode, padding_mode=padding, align_corners=ALIGN_CORNERS)


__all__ = ["PADDINGS", "SAMPLERS", "check_sampler", "sample"]
