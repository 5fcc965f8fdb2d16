"""The base of every transform family: the ``Transform`` interface, the library's coordinate
convention (``ALIGN_CORNERS``) and the size, cache and grid helpers that the 2-D families
(:mod:`.transforms`) and the volumetric ones (:mod:`.transforms3d`) share. It imports neither,
so the family modules import it and not each other (the convention: :mod:`.transforms`)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

ALIGN_CORNERS = False

_BASE_GRID_CACHE: dict[tuple, torch.Tensor] = {}


_KINDS = {2: ("an image", "(H, W)"), 3: ("a volume", "(D, H, W)")}


def _family_names(ndim: int) -> list[str]:
    """The names of the ``ndim``-D families defined so far (the subclasses of ``Transform``),
    for error messages: this module names no family itself."""
    names, todo = [], list(Transform.__subclasses__())
    while todo:
        cls = todo.pop(0)
        if cls.name and cls.ndim == ndim and cls.name not in names:
            names.append(cls.name)
        todo[:0] = cls.__subclasses__()  # depth first: each family before its subclasses
    return names


def _size_nd(size: int | Sequence[int], ndim: int, family: str | None = None) -> tuple[int, ...]:
    """``n`` or an ``ndim``-long size -> a tuple of positive ints; ``family`` names the
    transform in errors, and a size of the other dimension gets the names of its families."""
    if isinstance(size, int):
        size = (size,) * ndim
    size = tuple(int(s) for s in size)
    if len(size) != ndim or min(size) < 1:
        who = f"transform {family!r} is {ndim}-D: " if family else ""
        hint = ""
        if len(size) != ndim and len(size) in _KINDS:
            kind, axes = _KINDS[len(size)]
            names = ", ".join(_family_names(len(size)))
            hint = f"; {kind} size {axes} needs a {len(size)}-D family: {names}"
        raise ValueError(
            f"{who}expected a size {_KINDS[ndim][1]} of positive ints, got {size}{hint}"
        )
    return size


def _size2(size: int | Sequence[int], family: str | None = None) -> tuple[int, int]:
    """``42`` or ``(H, W)`` -> ``(H, W)`` of positive ints (see ``_size_nd``)."""
    return _size_nd(size, 2, family)  # type: ignore[return-value]


def _cached(cache: dict[tuple, torch.Tensor], key: tuple, build, limit: int = 64) -> torch.Tensor:
    """``cache[key]``, built by ``build()`` on a miss; the cache is emptied past ``limit``."""
    value = cache.get(key)
    if value is None:
        value = build()
        if len(cache) > limit:
            cache.clear()
        cache[key] = value
    return value


def _homogeneous(grid: torch.Tensor) -> torch.Tensor:
    """A grid ``(..., n)`` -> ``(n + 1, N)``: its coordinate rows, then a row of ones."""
    g = grid.reshape(-1, grid.shape[-1])
    return torch.cat([g.T, g.new_ones(1, g.shape[0])], 0).contiguous()


def base_grid(
    out_size: int | Sequence[int],
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """The identity grid ``(H, W, 2)`` of pixel centres, in the library's convention (cached)."""
    h, w = _size2(out_size)
    device = torch.device(device) if device is not None else torch.device("cpu")

    def build() -> torch.Tensor:
        eye = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]], dtype=dtype, device=device)
        return F.affine_grid(eye, [1, 1, h, w], align_corners=ALIGN_CORNERS)[0]

    return _cached(_BASE_GRID_CACHE, (h, w, device, dtype), build)


def _rows_to_grid(rows: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """``(B * n, prod(size))`` coordinate rows (``x``, ``y``[, ``z``]) -> ``(B, *size, n)``,
    ``n = len(size)`` (a permuted view, no copy)."""
    n = len(size)
    return rows.view(-1, n, *size).permute(0, *range(2, n + 2), 1)


class Transform:
    """Base class of a parametric family of warps."""

    name: str = ""
    num_params: int = 0
    ndim: int = 2  # 2: images (grids (B, H, W, 2)); 3: volumes (see transforms3d)

    def __init__(self, bound: bool = False, bound_scale: float = 1.0) -> None:
        self.bound = bool(bound)
        self.bound_scale = float(bound_scale)
        if self.bound_scale <= 0:
            raise ValueError(f"bound_scale must be > 0, got {bound_scale}")

    # -- parameters -------------------------------------------------------------------------
    def identity(self) -> torch.Tensor:
        """The 1-D parameter vector of the identity warp (float32): by default the zoom by 1
        (``_scaled(1.0)``); a family without a scale overrides it."""
        return self._scaled(1.0)

    def check(self, params: torch.Tensor) -> torch.Tensor:
        """Validate the shape: ``(B, P)`` (or ``(P,)``, promoted to ``(1, P)``)."""
        if not isinstance(params, torch.Tensor):
            raise TypeError(f"{self.name}: params must be a tensor, got {type(params).__name__}")
        if params.dim() == 1:
            params = params.unsqueeze(0)
        if params.dim() != 2 or params.shape[1] != self.num_params:
            raise ValueError(
                f"transform '{self.name}' expects params of shape (B, {self.num_params}) "
                f"({self.num_params} parameters), got {tuple(params.shape)}"
            )
        return params

    def _scaled(self, scale: float) -> torch.Tensor:
        """Parameters (after bounding) of the zoom ``p -> scale * p`` about the centre."""
        raise ValueError(f"transform '{self.name}' has no scale; use init_scale=1")

    def initial(self, scale: float = 1.0) -> torch.Tensor:
        """Raw 1-D parameters whose warp is the zoom ``p -> scale * p`` (a centred crop of
        ``scale`` times the input's side; ``1`` gives exactly ``identity()``). With
        ``bound=True`` the inverse of the tanh squashing is applied, so the constrained
        parameters are the zoom (it must lie inside ``identity +- bound_scale``)."""
        scale = float(scale)
        ident = self.identity()
        if scale == 1.0:
            return ident
        if not scale > 0:
            raise ValueError(f"init scale must be > 0, got {scale}")
        target = self._scaled(scale).to(ident)
        if not self.bound:
            return target
        s = self.bound_scale
        rel = (target - ident) / s
        if float(rel.abs().max()) >= 1.0:
            raise ValueError(
                f"init scale {scale} is outside the bound identity +- {s} of '{self.name}'"
            )
        return ident + s * torch.atanh(rel)

    def constrain(self, params: torch.Tensor) -> torch.Tensor:
        """Apply the optional bounding; the identity is a fixed point."""
        params = self.check(params)
        if not self.bound:
            return params
        ident = self.identity().to(params)
        s = self.bound_scale
        return ident + s * torch.tanh((params - ident) / s)

    # -- geometry ---------------------------------------------------------------------------
    def _points(self, params: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def points(self, params: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
        """Map output points ``(B, N, 2)`` or ``(N, 2)`` to input points ``(B, N, 2)``."""
        params = self.constrain(params)
        if pts.dim() == 2:
            pts = pts.unsqueeze(0).expand(params.shape[0], -1, -1)
        return self._points(params, pts.to(params))

    def grid(self, params: torch.Tensor, out_size: int | Sequence[int]) -> torch.Tensor:
        """Sampling grid ``(B, H, W, 2)`` in normalised coordinates for the given params."""
        return self._grid(self.constrain(params), _size2(out_size, self.name))

    def _grid(self, params: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        h, w = size
        pts = base_grid(size, params.device, params.dtype).reshape(1, h * w, 2)
        out = self._points(params, pts.expand(params.shape[0], -1, -1))
        return out.reshape(params.shape[0], h, w, 2)

    def jacobian_det(self, params: torch.Tensor) -> torch.Tensor | None:
        """Determinant of the warp's Jacobian at the centre ``(B,)`` (None if not defined)."""
        return None

    def __repr__(self) -> str:
        extra = f", bound_scale={self.bound_scale}" if self.bound else ""
        return f"{type(self).__name__}(num_params={self.num_params}, bound={self.bound}{extra})"


__all__ = ["ALIGN_CORNERS", "Transform", "base_grid"]
