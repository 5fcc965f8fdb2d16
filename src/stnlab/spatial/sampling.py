"""The library's one sampler: every image warp in stnlab goes through :func:`sample`.

``grid_sample`` does the work, except on a channels-last CPU feature map sampled bilinearly
with zero padding where numba is installed: the kernels of ``stnlab.spatial._cpu`` then keep
the map's layout (same values and gradients up to float rounding)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import _cpu
from .layout import is_channels_last_map, nchw_keeping_grad_layout
from .transform_base import ALIGN_CORNERS

SAMPLERS: tuple[str, ...] = ("bilinear", "nearest", "bicubic")
PADDINGS: tuple[str, ...] = ("zeros", "border")


def check_sampler(mode: str, padding: str = "zeros") -> None:
    """Raise ``ValueError`` naming the valid choices for an unknown mode or padding."""
    if mode not in SAMPLERS:
        raise ValueError(f"unknown sampler {mode!r}; valid names: {', '.join(SAMPLERS)}")
    if padding not in PADDINGS:
        raise ValueError(f"unknown padding {padding!r}; valid names: {', '.join(PADDINGS)}")


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
        if mode == "bilinear" and padding == "zeros" and _cpu.can_sample(u, grid):
            return _cpu.sample_rows(u, grid)
        u = nchw_keeping_grad_layout(u)  # grid_sample reads NCHW; the gradient stays channels-last
    return F.grid_sample(u, grid, mode=mode, padding_mode=padding, align_corners=ALIGN_CORNERS)


__all__ = ["PADDINGS", "SAMPLERS", "check_sampler", "sample"]
