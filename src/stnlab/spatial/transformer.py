"""The spatial transformer module: localisation net -> grid generator -> sampler."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import nn

from .localisation import make_localisation
from .localisation3d import make_localisation3d
from .sampling import check_sampler, sample
from .transforms import Transform, make_transform
from .transforms3d import family_size


class SpatialTransformer(nn.Module):
    """A spatial transformer (Jaderberg et al. 2015) that maps ``(B, C, *in_size)`` to
    ``(B, C, *out_size)``.

    Args:
        in_channels, in_size: the input it will see (the localisation net is sized for it);
            ``in_size`` is ``(H, W)``, or ``(D, H, W)`` with a volumetric family (``affine3d``,
            ...; the 3-D localisation nets of ``localisation3d``, same names).
        transform: a family name (see ``TRANSFORMS``) or a ``Transform`` instance.
        out_size: output ``(H, W)`` (volumes: ``(D, H, W)``); ``None`` keeps ``in_size``.
        sampling: ``bilinear`` (the paper's), ``nearest`` or ``bicubic``.
        padding: ``zeros`` or ``border``.
        loc: ``conv`` (the paper's ST-CNN net), ``fc`` (ST-FCN) or any ``nn.Module`` mapping the
            input to ``(B, num_params)`` (you then own its initialisation).
        loc_downsample: average-pool factor in front of the localisation net;
            ``None`` means 2 for ``conv`` and 1 for ``fc``.
        bound: squash the parameters to ``identity +- bound_scale`` (tanh).
        grid_size: TPS control-point grid ``K`` (``2 K^2`` parameters); ignored otherwise.
        loc_kwargs: extra arguments of the localisation net (``channels``, ``hidden``, ...).
        transform_kwargs: extra arguments of the family (``bound_scale``, ...).
        init_scale: the localisation net starts at the centred zoom ``p -> init_scale * p``
            (``transform.initial``): below 1 it starts on a crop of the centre. ``1``
            (default) is exactly the identity. Ignored for a ready ``loc`` module.

    After a forward, ``last_params`` holds the detached ``(B, P)`` parameters (as fed to
    ``transform.grid``) and ``diagnostics()`` summarises what the warp did.
    """

    def __init__(
        self,
        in_channels: int,
        in_size: int | Sequence[int],
        transform: str | Transform = "affine",
        out_size: int | Sequence[int] | None = None,
        sampling: str = "bilinear",
        padding: str = "zeros",
        loc: str | nn.Module = "conv",
        loc_downsample: int | None = None,
        bound: bool = False,
        grid_size: int = 4,
        loc_kwargs: dict | None = None,
        transform_kwargs: dict | None = None,
        init_scale: float = 1.0,
    ) -> None:
        super().__init__()
        check_sampler(sampling, padding)
        self.in_channels = int(in_channels)
        self.sampling = sampling
        self.padding = padding
        if isinstance(transform, Transform):
            self.transform = transform
        else:
            tkw = {"bound": bound, "grid_size": grid_size, **dict(transform_kwargs or {})}
            self.transform = make_transform(transform, **tkw)
        # (H, W) for a 2-D family, (D, H, W) for a volumetric one (errors name the families)
        self.in_size = family_size(self.transform, in_size)
        self.out_size = family_size(self.transform, out_size) if out_size is not None else (
            self.in_size
        )
        if len(self.in_size) == 3 and sampling == "bicubic":
            raise ValueError("bicubic sampling is 2-D only; for volumes use bilinear or nearest")
        if isinstance(loc, nn.Module):
            self.loc = loc
        else:
            lkw = dict(loc_kwargs or {})
            if loc_downsample is not None:
                lkw["downsample"] = int(loc_downsample)
            elif str(loc).lower() == "conv":
                lkw.setdefault("downsample", 2)
            make = make_localisation3d if self.transform.ndim == 3 else make_localisation
            self.loc = make(
                loc, self.in_channels, self.in_size, self.transform.num_params,
                self.transform.initial(init_scale), **lkw,
            )
        self.last_params: torch.Tensor | None = None
        self._last_grid: torch.Tensor | None = None

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        if u.shape[1:] != (self.in_channels, *self.in_size):
            raise ValueError(
                f"SpatialTransformer built for (B, {self.in_channels}, "
                f"{', '.join(map(str, self.in_size))}) input, got {tuple(u.shape)}"
            )
        params = self.loc(u)
        if torch.is_autocast_enabled(u.device.type):
            # Mixed precision (trainer.precision=bf16-mixed): the localisation net runs in
            # bf16, the grid and the sampling in float32 (a bf16 grid is off by up to 1/256 of
            # the image's half-width and no longer reproduces the input at the identity).
            with torch.autocast(u.device.type, enabled=False):
                return self._warp(u.float(), params.float())
        return self._warp(u, params)

    def _warp(self, u: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        grid = self.transform.grid(params, self.out_size)
        self.last_params = params.detach()
        self._last_grid = grid.detach()
        return sample(u, grid, mode=self.sampling, padding=self.padding)

    @torch.no_grad()
    def diagnostics(self) -> dict[str, float]:
        """Floats about the last forward: ``out_of_bounds`` (fraction of grid points outside
        the image), ``det_mean`` (mean Jacobian determinant at the centre: area scale of the
        sampled region; linear and projective families), ``params_std`` (mean over parameters
        of the batch std). Empty before the first forward."""
        if self.last_params is None or self._last_grid is None:
            return {}
        out: dict[str, float] = {}
        out["out_of_bounds"] = float((self._last_grid.abs() > 1).any(-1).float().mean())
        det = self.transform.jacobian_det(self.last_params)
        if det is not None:
            out["det_mean"] = float(det.mean())
        if self.last_params.shape[0] > 1:
            out["params_std"] = float(self.last_params.float().std(0).mean())
        return out

    def extra_repr(self) -> str:
        return (
            f"in=({self.in_channels}, {self.in_size}), out_size={self.out_size}, "
            f"transform={self.transform!r}, sampling={self.sampling}, padding={self.padding}"
        )


class ParallelSpatialTransformers(nn.Module):
    """``num`` independent transformers on the same input; outputs concatenated on channels
    (the paper's 2x / 4x ST-CNN). Output: ``(B, num * C, *out_size)``.

    ``split_channels=True`` gives each transformer its own group of ``C / num`` input channels
    instead (MNIST addition: a digit a channel, so each transformer frames its own digit; an
    affine warp of both channels cannot frame two digits at once). Output: ``(B, C, *out_size)``.
    """

    def __init__(self, num: int = 2, split_channels: bool = False, *, in_channels: int,
                 **st_kwargs) -> None:
        super().__init__()
        num, in_channels = int(num), int(in_channels)
        if num < 1:
            raise ValueError(f"num must be >= 1, got {num}")
        if split_channels and in_channels % num:
            raise ValueError(
                f"split_channels: {in_channels} input channels do not split into {num} "
                f"transformers; use a num_parallel that divides {in_channels}, or "
                "split_channels=false")
        self.split_channels = bool(split_channels)
        group = in_channels // num if split_channels else in_channels
        self.transformers = nn.ModuleList(
            SpatialTransformer(in_channels=group, **st_kwargs) for _ in range(num))
        self.out_size = self.transformers[0].out_size
        self.out_channels = in_channels if split_channels else num * in_channels

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        parts = u.chunk(len(self.transformers), 1) if self.split_channels else [u] * len(
            self.transformers)
        outs = [st(x) for st, x in zip(self.transformers, parts, strict=True)]
        return outs[0] if len(outs) == 1 else torch.cat(outs, 1)


def spatial_transformers(model: nn.Module) -> list[SpatialTransformer]:
    """Every ``SpatialTransformer`` inside ``model`` (in module order)."""
    return [m for m in model.modules() if isinstance(m, SpatialTransformer)]


def localisation_parameters(model: nn.Module) -> Iterator[nn.Parameter]:
    """Every parameter inside any ``SpatialTransformer.loc`` in ``model`` (each once)."""
    seen: set[int] = set()
    for st in spatial_transformers(model):
        for p in st.loc.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                yield p


__all__ = [
    "ParallelSpatialTransformers",
    "SpatialTransformer",
    "localisation_parameters",
    "spatial_transformers",
]
