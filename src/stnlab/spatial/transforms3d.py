"""Volumetric transform families: parameter vectors -> 3-D sampling grids.

Convention (the 2-D one of :mod:`stnlab.spatial.transforms`, one axis more)
--------------------------------------------------------------------------
* A volume is ``(B, C, D, H, W)``. Normalised coordinates ``(x, y, z)`` in ``[-1, 1]``: ``x``
  runs along W, ``y`` along H, ``z`` along D; a grid is ``(B, D, H, W, 3)`` with the last axis
  in that order ``(x, y, z)``, exactly as ``torch.nn.functional.grid_sample`` on 5-D input.
* ``ALIGN_CORNERS = False`` (the library's one setting): ``-1``/``1`` are the outer voxel
  faces. The identity grid is exact on a power-of-two side (the task's 32^3): the identity
  then returns its input bit for bit; on other sides up to float32 rounding (~1e-6).
* A transform maps an *output* point to the *input* point it samples.
* Rotation sign: :func:`rotation_matrix` is right-handed in ``(x, y, z)``. As ``affine3d``
  parameters (``[R | 0]``), a +90 degree rotation about ``z`` gives
  ``torch.rot90(v, 1, dims=(3, 4))``, about ``x`` ``torch.rot90(v, 1, dims=(2, 3))`` and about
  ``y`` ``torch.rot90(v, 1, dims=(4, 2))`` (tests/test_spatial3d.py).

Families: ``translation3d`` ``(tx, ty, tz)``, ``attention3d`` ``(s, tx, ty, tz)`` and
``affine3d`` (the 12 entries of the ``3 x 4`` matrix, row-major). Same interface as the 2-D
families (``identity``, ``initial``, ``constrain``/``bound``, ``points``, ``grid``,
``jacobian_det``: the volume scale of the sampled region).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .transform_base import (
    ALIGN_CORNERS,
    Transform,
    _cached,
    _homogeneous,
    _rows_to_grid,
    _size_nd,
)

_BASE_GRID_CACHE: dict[tuple, torch.Tensor] = {}
_HOMOG_CACHE: dict[tuple, torch.Tensor] = {}


def _size3(size: int | Sequence[int], family: str | None = None) -> tuple[int, int, int]:
    """``32`` or ``(D, H, W)`` -> ``(D, H, W)`` of positive ints (``transform_base._size_nd``)."""
    return _size_nd(size, 3, family)  # type: ignore[return-value]


def family_size(transform: Transform, size: int | Sequence[int]) -> tuple[int, ...]:
    """``size`` checked against the family's dimension: ``(H, W)`` or ``(D, H, W)``."""
    return _size_nd(size, getattr(transform, "ndim", 2), transform.name)


def _centres(n: int) -> torch.Tensor:
    """Voxel centres ``(2 j + 1) / n - 1`` along one axis (``align_corners=False``), in
    float64: rounded once to the grid's dtype they are exact on a power-of-two side, where
    the sampler then lands on the voxel centres exactly."""
    if ALIGN_CORNERS:  # pragma: no cover - the library's one convention is False
        return torch.linspace(-1.0, 1.0, n, dtype=torch.float64)
    return (2.0 * torch.arange(n, dtype=torch.float64) + 1.0) / n - 1.0


def _base_grid3d(d: int, h: int, w: int) -> torch.Tensor:
    z, y, x = torch.meshgrid(_centres(d), _centres(h), _centres(w), indexing="ij")
    return torch.stack([x, y, z], -1)


def base_grid3d(
    out_size: int | Sequence[int],
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """The identity grid ``(D, H, W, 3)`` of voxel centres, ``(x, y, z)`` last (cached)."""
    d, h, w = _size3(out_size)
    device = torch.device(device) if device is not None else torch.device("cpu")
    key = (d, h, w, device, dtype)
    return _cached(_BASE_GRID_CACHE, key, lambda: _base_grid3d(d, h, w).to(device, dtype))


def _homogeneous_base3d(
    size: tuple[int, int, int], device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """``(4, D*H*W)`` rows ``x, y, z, 1`` of the identity grid (cached)."""
    key = (size, device, dtype)
    return _cached(_HOMOG_CACHE, key, lambda: _homogeneous(base_grid3d(size, device, dtype)))


def rotation_matrix(axis: str, angle: float | torch.Tensor) -> torch.Tensor:
    """Right-handed rotation ``(3, 3)`` (float64) by ``angle`` radians about ``axis`` (``x``,
    ``y`` or ``z``), acting on column vectors ``(x, y, z)``."""
    a = torch.as_tensor(angle, dtype=torch.float64)
    c, s = torch.cos(a), torch.sin(a)
    one, zero = torch.ones_like(a), torch.zeros_like(a)
    rows = {
        "x": [[one, zero, zero], [zero, c, -s], [zero, s, c]],
        "y": [[c, zero, s], [zero, one, zero], [-s, zero, c]],
        "z": [[c, -s, zero], [s, c, zero], [zero, zero, one]],
    }
    if axis not in rows:
        raise ValueError(f"unknown axis {axis!r}; valid: x, y, z")
    return torch.stack([torch.stack(r) for r in rows[axis]])


class Transform3D(Transform):
    """Base class of the volumetric families: affine maps built as ``(B, 3, 4)`` matrices."""

    ndim = 3

    def theta(self, params: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _points(self, params: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
        th = self.theta(params)
        return torch.baddbmm(th[:, :, 3].unsqueeze(1), pts, th[:, :, :3].transpose(1, 2))

    def points(self, params: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
        """Map output points ``(B, N, 3)`` or ``(N, 3)`` (``x, y, z``) to input points."""
        if pts.shape[-1] != 3:
            raise ValueError(f"{self.name}: points must be (..., 3) (x, y, z), got {pts.shape}")
        return super().points(params, pts)

    def grid(self, params: torch.Tensor, out_size: int | Sequence[int]) -> torch.Tensor:
        """Sampling grid ``(B, D, H, W, 3)`` (``x, y, z`` last) for the given params."""
        size = _size3(out_size, self.name)
        th = self.theta(self.constrain(params))
        base = _homogeneous_base3d(size, th.device, th.dtype)
        # one (B*3, 4) @ (4, D*H*W) matmul; the rows x, y, z become the last axis (a view)
        return _rows_to_grid(th.reshape(-1, 4) @ base, size)

    def jacobian_det(self, params: torch.Tensor) -> torch.Tensor:
        """Determinant of the linear part ``(B,)``: the volume scale of the sampled region."""
        return torch.linalg.det(self.theta(self.constrain(params))[:, :, :3])


class Translation3D(Transform3D):
    """``(tx, ty, tz)``: a pure shift."""

    name = "translation3d"
    num_params = 3

    def identity(self) -> torch.Tensor:
        return torch.zeros(3)

    def theta(self, params: torch.Tensor) -> torch.Tensor:
        b = params.shape[0]
        eye = torch.eye(3, dtype=params.dtype, device=params.device).expand(b, 3, 3)
        return torch.cat([eye, params.unsqueeze(2)], 2)


class Attention3D(Transform3D):
    """``(s, tx, ty, tz)``: isotropic scale and shift (a cubic crop of the volume)."""

    name = "attention3d"
    num_params = 4

    def _scaled(self, scale: float) -> torch.Tensor:
        return torch.tensor([scale, 0.0, 0.0, 0.0])

    def theta(self, params: torch.Tensor) -> torch.Tensor:
        s, t = params[:, :1], params[:, 1:]
        eye = torch.eye(3, dtype=params.dtype, device=params.device)
        return torch.cat([s.unsqueeze(2) * eye, t.unsqueeze(2)], 2)


class Affine3D(Transform3D):
    """The 12 entries of the ``3 x 4`` matrix, row-major (rows map to ``x``, ``y``, ``z``)."""

    name = "affine3d"
    num_params = 12

    def _scaled(self, scale: float) -> torch.Tensor:
        return (torch.eye(3, 4) * torch.tensor([scale, scale, scale, 0.0])).reshape(-1)

    def theta(self, params: torch.Tensor) -> torch.Tensor:
        return params.view(-1, 3, 4)

    @staticmethod
    def rotation(axis: str, degrees: float) -> torch.Tensor:
        """The 12 parameters (float32) of a rotation by ``degrees`` about ``axis``."""
        r = rotation_matrix(axis, math.radians(degrees))
        return torch.cat([r, torch.zeros(3, 1, dtype=r.dtype)], 1).reshape(-1).float()


TRANSFORMS3D: dict[str, type[Transform]] = {
    "translation3d": Translation3D,
    "attention3d": Attention3D,
    "affine3d": Affine3D,
}
"""The volumetric families by name (``make_transform`` looks here after ``TRANSFORMS``)."""


__all__ = [
    "TRANSFORMS3D",
    "Affine3D",
    "Attention3D",
    "Transform3D",
    "Translation3D",
    "base_grid3d",
    "family_size",
    "rotation_matrix",
]
