"""Transform families: parameter vectors -> sampling grids in normalised coordinates.

Convention (the one used everywhere in stnlab)
----------------------------------------------
* Normalised coordinates ``(x, y)`` in ``[-1, 1]``: ``x`` runs along the width (left -> right),
  ``y`` along the height (top -> bottom), exactly as ``torch.nn.functional.grid_sample``.
* ``ALIGN_CORNERS = False``: ``-1`` and ``1`` are the outer *edges* of the image, pixel ``j`` of
  a width-``W`` image has its centre at ``x = (2 j + 1) / W - 1``. The convention is passed
  explicitly to every ``affine_grid`` / ``grid_sample`` call in the library.
* A transform maps an *output* location to the *input* location that it samples
  (the paper's ``T_theta(G)``), so the identity parameters reproduce the input.

Every family has ``num_params``, ``identity()``, ``initial(scale)`` (a centred zoom, for the
localisation net's bias), ``points(params, pts)`` (map any set of output
points) and ``grid(params, out_size)`` (map the regular output grid, ``(B, H, W, 2)``).
With ``bound=True`` each parameter is squashed to ``identity +- bound_scale`` by a tanh whose
slope at the identity is 1, so the identity initialisation is unchanged.
"""


from __future__ import annotations

import math

import torch

from .transform_base import (
    ALIGN_CORNERS,
    Transform,
    _cached,
    _homogeneous,
    _rows_to_grid,
    base_grid,
)
from .transforms3d import TRANSFORMS3D

_HOMOG_CACHE: dict[tuple, torch.Tensor] = {}


def _homogeneous_base(
    size: tuple[int, int], device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """``(3, H*W)`` rows ``x, y, 1`` of the identity grid (cached)."""
    key = (size, device, dtype)
    return _cached(_HOMOG_CACHE, key, lambda: _homogeneous(base_grid(size, device, dtype)))


class _Linear(Transform):
    """Families that are affine maps: subclasses build the ``(B, 2, 3)`` matrix."""

    def theta(self, params: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _points(self, params: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
        th = self.theta(params)
        return torch.baddbmm(th[:, :, 2].unsqueeze(1), pts, th[:, :, :2].transpose(1, 2))

    def _grid(self, params: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        # One (B*2, 3) @ (3, H*W) matmul (forward and backward): about 2x cheaper on CPU than
        # F.affine_grid, which builds its base grid at every call; same convention.
        th = self.theta(params)
        base = _homogeneous_base(size, th.device, th.dtype)
        return _rows_to_grid(th.reshape(-1, 3) @ base, size)

    def jacobian_det(self, params: torch.Tensor) -> torch.Tensor:
        th = self.theta(self.constrain(params))
        return th[:, 0, 0] * th[:, 1, 1] - th[:, 0, 1] * th[:, 1, 0]


class Translation(_Linear):
    """``(tx, ty)``: a pure shift."""

    name = "translation"
    num_params = 2

    def identity(self) -> torch.Tensor:
        return torch.zeros(2)

    def theta(self, params: torch.Tensor) -> torch.Tensor:
        b = params.shape[0]
        one = params.new_ones(b)
        zero = params.new_zeros(b)
        tx, ty = params.unbind(1)
        return torch.stack([one, zero, tx, zero, one, ty], 1).view(b, 2, 3)


class Attention(_Linear):
    """``(s, tx, ty)``: isotropic scale and shift (the paper's attention / crop)."""

    name = "attention"
    num_params = 3

    def _scaled(self, scale: float) -> torch.Tensor:
        return torch.tensor([scale, 0.0, 0.0])

    def theta(self, params: torch.Tensor) -> torch.Tensor:
        b = params.shape[0]
        zero = params.new_zeros(b)
        s, tx, ty = params.unbind(1)
        return torch.stack([s, zero, tx, zero, s, ty], 1).view(b, 2, 3)


class Crop(Attention):
    """``(s, tx, ty)`` with the scale squashed into ``[min_scale, max_scale]`` (a sigmoid)
    and the centre into the input (a tanh): an attention crop that can neither zoom out past
    ``max_scale`` nor leave the image.

    Bounded by construction (``bound`` is refused). With ``max_scale`` < 1 the identity is out
    of reach: start it with ``init_scale`` inside the range; ``identity()`` is the centred crop
    at the middle scale. On cluttered MNIST the unbounded attention drifts out to a crop the
    size of the digit's frame; a ceiling holds it on the digit (docs/results.md).
    """

    name = "crop"

    def __init__(self, min_scale: float = 0.1, max_scale: float = 1.0, bound: bool = False,
                 bound_scale: float = 1.0) -> None:
        if bound:
            raise ValueError("transform 'crop' is bounded by its min_scale and max_scale; "
                             "leave bound=false")
        super().__init__(bound=False, bound_scale=bound_scale)
        if not 0.0 < min_scale < max_scale:
            raise ValueError(f"transform 'crop' needs 0 < min_scale < max_scale, got "
                             f"min_scale={min_scale}, max_scale={max_scale}")
        self.min_scale, self.max_scale = float(min_scale), float(max_scale)

    def constrain(self, params: torch.Tensor) -> torch.Tensor:
        params = self.check(params)
        span = self.max_scale - self.min_scale
        s = self.min_scale + span * torch.sigmoid(params[:, 0])
        return torch.stack([s, torch.tanh(params[:, 1]), torch.tanh(params[:, 2])], 1)

    def initial(self, scale: float = 1.0) -> torch.Tensor:
        """Raw parameters of a centred crop of ``scale`` (inside the open scale range)."""
        rel = (float(scale) - self.min_scale) / (self.max_scale - self.min_scale)
        if not 0.0 < rel < 1.0:
            raise ValueError(f"init_scale={scale} must lie strictly between min_scale="
                             f"{self.min_scale} and max_scale={self.max_scale}")
        return torch.tensor([math.log(rel / (1 - rel)), 0.0, 0.0])

    def identity(self) -> torch.Tensor:
        return self.initial(0.5 * (self.min_scale + self.max_scale))

    def __repr__(self) -> str:
        return f"Crop(min_scale={self.min_scale}, max_scale={self.max_scale})"


class Similarity(_Linear):
    """``(s, angle, tx, ty)``: scale, rotation (radians), shift."""

    name = "similarity"
    num_params = 4

    def _scaled(self, scale: float) -> torch.Tensor:
        return torch.tensor([scale, 0.0, 0.0, 0.0])

    def theta(self, params: torch.Tensor) -> torch.Tensor:
        b = params.shape[0]
        s, a, tx, ty = params.unbind(1)
        c, si = s * torch.cos(a), s * torch.sin(a)
        return torch.stack([c, -si, tx, si, c, ty], 1).view(b, 2, 3)


class Affine(_Linear):
    """The 6 entries of the ``2 x 3`` matrix, row-major (the paper's affine ST)."""

    name = "affine"
    num_params = 6

    def _scaled(self, scale: float) -> torch.Tensor:
        return torch.tensor([scale, 0.0, 0.0, 0.0, scale, 0.0])

    def theta(self, params: torch.Tensor) -> torch.Tensor:
        return params.view(-1, 2, 3)


class Projective(Transform):
    """Homography ``[[h0, h1, h2], [h3, h4, h5], [h6, h7, 1]]``: 8 parameters, row-major."""

    name = "projective"
    num_params = 8
    eps = 1e-6

    def _scaled(self, scale: float) -> torch.Tensor:
        return torch.tensor([scale, 0.0, 0.0, 0.0, scale, 0.0, 0.0, 0.0])

    def matrix(self, params: torch.Tensor) -> torch.Tensor:
        """The ``(B, 3, 3)`` homography (params are taken as given, no bounding)."""
        params = self.check(params)
        return torch.cat([params, params.new_ones(params.shape[0], 1)], 1).view(-1, 3, 3)

    def _points(self, params: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
        m = self.matrix(params)
        xyw = torch.baddbmm(m[:, :, 2].unsqueeze(1), pts, m[:, :, :2].transpose(1, 2))
        w = xyw[..., 2:]
        w = torch.where(w >= 0, w.clamp_min(self.eps), w.clamp_max(-self.eps))
        return xyw[..., :2] / w

    def _grid(self, params: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        m = self.matrix(params)
        base = _homogeneous_base(size, m.device, m.dtype)
        xyw = (m.reshape(-1, 3) @ base).view(-1, 3, size[0] * size[1])
        w = xyw[:, 2:]
        w = torch.where(w >= 0, w.clamp_min(self.eps), w.clamp_max(-self.eps))
        return _rows_to_grid((xyw[:, :2] / w).reshape(-1, size[0] * size[1]), size)

    def jacobian_det(self, params: torch.Tensor) -> torch.Tensor:
        # With h22 = 1, det(H) = det(A - t g^T) (Schur complement) = the Jacobian at the origin.
        return torch.linalg.det(self.matrix(self.constrain(params)))


def _tps_kernel(d2: torch.Tensor) -> torch.Tensor:
    """Thin-plate radial basis ``U = r^2 log r^2`` from squared distances (0 at r = 0)."""
    return d2 * torch.log(d2.clamp_min(1e-30))


class TPS(Transform):
    """Thin-plate spline through a ``K x K`` regular grid of control points.

    The control points ``c_i`` sit on ``linspace(-1, 1, K)`` in output coordinates; the
    parameters are their targets ``c'_i`` in input coordinates, laid out
    ``[x_0, y_0, x_1, y_1, ...]`` (row-major over the grid, x fastest). The spline maps each
    ``c_i`` exactly onto ``c'_i``; the identity parameters are the ``c_i`` themselves.
    """

    name = "tps"

    def __init__(self, grid_size: int = 4, bound: bool = False, bound_scale: float = 1.0):
        super().__init__(bound=bound, bound_scale=bound_scale)
        grid_size = int(grid_size)
        if grid_size < 2:
            raise ValueError(f"tps grid_size must be >= 2, got {grid_size}")
        self.grid_size = grid_size
        self.num_params = 2 * grid_size * grid_size
        lin = torch.linspace(-1.0, 1.0, grid_size, dtype=torch.float64)
        yy, xx = torch.meshgrid(lin, lin, indexing="ij")
        self.control_points = torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)  # (n, 2) f64
        n = self.control_points.shape[0]
        c = self.control_points
        lmat = torch.zeros(n + 3, n + 3, dtype=torch.float64)
        lmat[:n, :n] = _tps_kernel(torch.cdist(c, c).pow(2))
        p = torch.cat([torch.ones(n, 1, dtype=torch.float64), c], 1)
        lmat[:n, n:] = p
        lmat[n:, :n] = p.T
        # Columns of L^-1 that multiply the targets (the 3 zero rows contribute nothing).
        self._l_inv = torch.linalg.inv(lmat)[:, :n].contiguous()  # (n + 3, n) f64
        self._cache: dict[tuple, torch.Tensor] = {}

    def _scaled(self, scale: float) -> torch.Tensor:
        return (scale * self.control_points).reshape(-1).to(torch.float32)

    def _basis(self, pts: torch.Tensor) -> torch.Tensor:
        """``(..., N, n)`` matrix ``Phi(pts) L^-1``: points -> weights over the targets."""
        c = self.control_points.to(pts)
        d2 = (pts.unsqueeze(-2) - c).pow(2).sum(-1)  # (..., N, n)
        phi = torch.cat([_tps_kernel(d2), torch.ones_like(pts[..., :1]), pts], -1)
        return phi @ self._l_inv.to(pts)

    def _points(self, params: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
        targets = params.view(params.shape[0], -1, 2)
        return self._basis(pts) @ targets

    def _grid(self, params: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        def build() -> torch.Tensor:  # (n, H*W), computed in f64 once per size
            pts = base_grid(size, params.device, torch.float64).reshape(-1, 2)
            return self._basis(pts).to(params.dtype).T.contiguous()

        m = _cached(self._cache, (size, params.device, params.dtype), build, limit=16)
        targets = params.view(params.shape[0], -1, 2).transpose(1, 2)  # (B, 2, n)
        return _rows_to_grid(targets.reshape(-1, m.shape[0]) @ m, size)

    def __repr__(self) -> str:
        return f"TPS(grid_size={self.grid_size}, num_params={self.num_params}, bound={self.bound})"


TRANSFORMS: dict[str, type[Transform]] = {
    "translation": Translation,
    "attention": Attention,
    "crop": Crop,
    "similarity": Similarity,
    "affine": Affine,
    "projective": Projective,
    "tps": TPS,
}


def make_transform(name: str | Transform, **kwargs) -> Transform:
    """Build a transform family by name (``TRANSFORMS``; volumes: ``TRANSFORMS3D``, e.g.
    ``affine3d``); ``tps`` also takes ``grid_size`` (default 4).

    All families take ``bound`` (bool) and ``bound_scale`` (float).
    """
    if isinstance(name, Transform):
        if kwargs:
            raise ValueError("kwargs given together with a ready Transform instance")
        return name
    key = str(name).lower()
    registry = TRANSFORMS if key in TRANSFORMS else TRANSFORMS3D
    if key not in registry:
        raise ValueError(
            f"unknown transform family {name!r}; valid names: "
            f"{', '.join([*TRANSFORMS, *TRANSFORMS3D])}"
        )
    if key != "tps" and "grid_size" in kwargs:
        kwargs = dict(kwargs)
        kwargs.pop("grid_size")  # harmless: allows one config dict for every family
    try:
        return registry[key](**kwargs)
    except TypeError as err:
        raise ValueError(f"bad arguments for transform {key!r}: {err}") from err


__all__ = [
    "ALIGN_CORNERS",
    "TRANSFORMS",
    "Affine",
    "Attention",
    "Crop",
    "Projective",
    "Similarity",
    "TPS",
    "Transform",
    "Translation",
    "base_grid",
    "make_transform",
]
