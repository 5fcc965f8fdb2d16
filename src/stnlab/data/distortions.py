"""Distortions of MNIST digits: the recipes of Jaderberg et al. (2015), Appendix A.4.

A distortion is a pure function of ``(images, generator)``::

    d = make_distortion("RTS")            # paper defaults; every parameter is a keyword
    y = d(x, generator)                   # x: (B, C_in, 28, 28) float in [0, 1], any device
                                          # y: (B, C_out, *d.out_size) float32 in [0, 1]

How it stays reproducible
-------------------------
* Every random number comes from the CPU ``torch.Generator`` as one ``torch.rand(B, k,
  dtype=float64)`` call per batch: sample ``i`` owns row ``i``. Gaussian draws are made from
  those uniforms with Box-Muller. So the draws do not depend on the device and, for the
  recipes that only transform each image on its own (none, R, RTS, P, E, addition, sequences),
  splitting a batch into chunks and feeding them in order with the same generator gives the
  very same images ("chunking independence"). ``cluttered`` cuts clutter from the *other*
  images of the batch, so its output depends on the batch it is given.
* The per-sample matrices (affine, homography, thin-plate spline) are built in float64 on the
  CPU; only the sampling grid and the bilinear sampling run on ``x.device``. Same seed and
  inputs give bit-identical output on one device; across devices the draws and matrices are
  identical and the pixels agree to float32 rounding.

Geometry conventions
--------------------
Pixel ``(i, j)`` has its centre at ``(x, y) = (j, i)``; an image of width ``W`` covers
``[-0.5, W - 0.5]``. Warps are written as maps from output pixels to source pixels and sampled
with ``grid_sample(mode="bilinear", padding_mode="zeros", align_corners=False)``: outside the
source digit is black (0). Bilinear sampling is a convex combination, so [0, 1] stays [0, 1].
Positive angles rotate counter-clockwise as seen on screen.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "ALIASES",
    "DISTORTIONS",
    "Distortion",
    "NoDistortion",
    "RTS",
    "Rotation",
    "make_distortion",
]

DIGIT_SIZE = 28
"""Side of an MNIST digit, the input size of every recipe."""

INK_THRESHOLD = 0.1
"""A pixel above this value is ink: used to find a digit's bounding box."""


# ----------------------------------------------------------------------------- validation


def _range(owner: str, field: str, value: Any, *, positive: bool = False) -> tuple[float, float]:
    """A ``(low, high)`` pair of finite floats with ``low <= high`` (and ``low > 0``)."""
    example = "[0.7, 1.2]" if positive else "[-45, 45]"
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
        raise ValueError(
            f"{owner}: {field}={value!r} must be a pair [low, high], e.g. {field}={example}"
        )
    try:
        low, high = float(value[0]), float(value[1])
    except (TypeError, ValueError):
        raise ValueError(
            f"{owner}: {field}={value!r} must hold two numbers, e.g. {field}={example}"
        ) from None
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"{owner}: {field}={value!r} must be finite")
    if low > high:
        raise ValueError(
            f"{owner}: {field}={value!r} has low > high; write {field}=[{high:g}, {low:g}]"
        )
    if positive and low <= 0:
        raise ValueError(
            f"{owner}: {field}={value!r} must be > 0 (a scale of zero or below flips or "
            f"erases the digit); use e.g. {field}={example}"
        )
    return low, high


def _number(
    owner: str, field: str, value: Any, *, minimum: float, strict: bool = False
) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{owner}: {field}={value!r} must be a number") from None
    if not math.isfinite(v) or v < minimum or (strict and v == minimum):
        op = ">" if strict else ">="
        raise ValueError(f"{owner}: {field}={value!r} must be {op} {minimum:g}")
    return v


def _integer(owner: str, field: str, value: Any, *, minimum: int, hint: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, int) and not (
        isinstance(value, float) and value.is_integer()
    ):
        raise ValueError(f"{owner}: {field}={value!r} must be an integer")
    v = int(value)
    if v < minimum:
        raise ValueError(f"{owner}: {field}={value!r} must be >= {minimum}{hint}")
    return v


def _canvas(owner: str, value: Any, *, minimum: int = DIGIT_SIZE) -> int:
    return _integer(
        owner,
        "canvas",
        value,
        minimum=minimum,
        hint=f" (the {DIGIT_SIZE}x{DIGIT_SIZE} digit must fit); use canvas={max(minimum, 42)}",
    )


def _check_generator(generator: Any) -> torch.Generator:
    if not isinstance(generator, torch.Generator):
        raise ValueError(
            "generator must be a torch.Generator on the CPU, e.g. "
            "torch.Generator().manual_seed(0)"
        )
    if generator.device.type != "cpu":
        raise ValueError(
            f"generator is on {generator.device}; distortions draw their parameters on the "
            "CPU so that every device sees the same numbers: pass torch.Generator()"
        )
    return generator


# ----------------------------------------------------------------------------- random draws


def _uniform(batch_size: int, k: int, generator: torch.Generator) -> Tensor:
    """``(B, k)`` float64 uniforms in [0, 1): row ``i`` belongs to sample ``i``."""
    return torch.rand(batch_size, k, generator=generator, dtype=torch.float64)


def _lerp(u: Tensor, bounds: tuple[float, float]) -> Tensor:
    return bounds[0] + u * (bounds[1] - bounds[0])


def _box_muller(u1: Tensor, u2: Tensor) -> Tensor:
    """Standard normals from two uniforms in [0, 1) (device- and chunk-independent)."""
    return torch.sqrt(-2.0 * torch.log1p(-u1)) * torch.cos(2.0 * math.pi * u2)


# ----------------------------------------------------------------------------- geometry

_BASE_CACHE: dict[tuple[int, int, str], Tensor] = {}


def _pixel_grid(height: int, width: int, device: torch.device) -> Tensor:
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


def _pixels_to_centred(size: tuple[int, int]) -> Tensor:
    """3x3 float64 map from pixel indices ``(j, i, 1)`` to coordinates about the centre."""
    h, w = size
    m = torch.eye(3, dtype=torch.float64)
    m[0, 2] = -(w - 1) / 2.0
    m[1, 2] = -(h - 1) / 2.0
    return m


def _centred_to_normalised(size: tuple[int, int]) -> Tensor:
    """3x3 float64 map from centred pixel coordinates to grid_sample's [-1, 1]
    (``align_corners=False``: the image edges, not the edge pixel centres, are at +-1)."""
    h, w = size
    return torch.diag(torch.tensor([2.0 / w, 2.0 / h, 1.0], dtype=torch.float64))


def _sample(x: Tensor, grid: Tensor) -> Tensor:
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _warp_matrix(
    x: Tensor, matrix: Tensor, out_size: tuple[int, int], *, projective: bool = False
) -> Tensor:
    """Warp ``x`` with per-sample 3x3 maps ``matrix`` (float64, CPU) that take centred
    *output* coordinates to centred *source* coordinates."""
    b = x.shape[0]
    in_size = (x.shape[-2], x.shape[-1])
    full = _centred_to_normalised(in_size) @ matrix @ _pixels_to_centred(out_size)
    rows = full if projective else full[:, :2]
    g = rows.to(device=x.device, dtype=torch.float32)
    pts = _pixel_grid(*out_size, x.device) @ g.transpose(1, 2)  # (B, H*W, 2 or 3)
    if projective:
        w = pts[..., 2:]
        # A point with w <= 0 lies beyond the horizon: send it outside the source (black).
        ok = w > 1e-6
        pts = torch.where(ok, pts[..., :2] / torch.where(ok, w, torch.ones_like(w)), 4.0)
    return _sample(x, pts.reshape(b, out_size[0], out_size[1], 2))


def _similarity(angle_deg: Tensor, scale: Tensor, shift: Tensor) -> Tensor:
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


def _ink_box(x: Tensor) -> Tensor:
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


def _fit_shift(
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
        [torch.stack([x0, y0], 1), torch.stack([x1, y0], 1),
         torch.stack([x0, y1], 1), torch.stack([x1, y1], 1)],
        dim=2,
    )  # (B, 2, 4)
    mapped = linear @ corners
    half = torch.tensor([canvas[1] / 2.0, canvas[0] / 2.0], dtype=torch.float64)
    lo = -half - mapped.amin(dim=2)
    hi = half - mapped.amax(dim=2)
    return torch.where(hi >= lo, lo + u * (hi - lo), (lo + hi) / 2.0)


# ----------------------------------------------------------------------------- base class


class Distortion:
    """A random image distortion: a pure function of ``(images, generator)``.

    Subclasses set ``name``, ``in_channels``, ``out_channels`` and ``out_size`` and implement
    ``sample_params`` (all random draws, on the CPU) and ``apply`` (deterministic given them).
    """

    name: ClassVar[str] = ""
    in_channels: int = 1
    out_channels: int = 1
    in_size: tuple[int, int] = (DIGIT_SIZE, DIGIT_SIZE)
    out_size: tuple[int, int] = (DIGIT_SIZE, DIGIT_SIZE)

    def params(self) -> dict[str, Any]:
        """Name and constructor parameters as plain JSON-able values (logging, cache keys)."""
        out: dict[str, Any] = {"name": self.name}
        for key in inspect.signature(type(self).__init__).parameters:
            if key == "self":
                continue
            value = getattr(self, key)
            out[key] = list(value) if isinstance(value, tuple) else value
        return out

    def sample_params(self, batch_size: int, generator: torch.Generator) -> dict[str, Tensor]:
        """Draw the random parameters of ``batch_size`` samples (CPU tensors, row = sample)."""
        raise NotImplementedError

    def apply(self, x: Tensor, params: dict[str, Tensor]) -> Tensor:
        """Distort ``x`` with given parameters (deterministic)."""
        raise NotImplementedError

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        x = self.check_input(x)
        params = self.sample_params(x.shape[0], _check_generator(generator))
        return self.apply(x, params)

    def check_input(self, x: Tensor) -> Tensor:
        """Validate ``x`` (shape, dtype, value range) and return it as float32."""
        shape = (self.in_channels, *self.in_size)
        if not isinstance(x, Tensor) or x.dim() != 4 or tuple(x.shape[1:]) != shape:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(
                f"{self.name}: expects images of shape (B, {shape[0]}, {shape[1]}, {shape[2]}), "
                f"got {got}"
            )
        if not x.is_floating_point():
            raise ValueError(
                f"{self.name}: expects float images in [0, 1], got {x.dtype}; "
                "use x.float() / 255"
            )
        x = x.float()
        if x.numel() and float(x.amax()) > 1.0 + 1e-3:
            raise ValueError(
                f"{self.name}: expects images in [0, 1], got a maximum of {float(x.amax()):g}; "
                "divide by 255"
            )
        return x

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items() if k != "name")
        return f"{type(self).__name__}({args})"


# ----------------------------------------------------------------------------- recipes


class NoDistortion(Distortion):
    """``none``: the plain 28x28 digit."""

    name = "none"

    def __init__(self) -> None:
        pass

    def sample_params(self, batch_size: int, generator: torch.Generator) -> dict[str, Tensor]:
        return {}

    def apply(self, x: Tensor, params: dict[str, Tensor]) -> Tensor:
        return x.float().clone()


class Rotation(Distortion):
    """``R``: rotation by an angle uniform in ``angle`` degrees about the centre, 28x28."""

    name = "R"

    def __init__(self, angle: Sequence[float] = (-90.0, 90.0)) -> None:
        self.angle = _range(self.name, "angle", angle)

    def sample_params(self, batch_size: int, generator: torch.Generator) -> dict[str, Tensor]:
        u = _uniform(batch_size, 1, generator)
        return {"angle": _lerp(u[:, 0], self.angle)}

    def apply(self, x: Tensor, params: dict[str, Tensor]) -> Tensor:
        angle = params["angle"]
        one = torch.ones_like(angle)
        m = _similarity(angle, one, torch.zeros(angle.shape[0], 2, dtype=torch.float64))
        return _warp_matrix(x, m, self.out_size)


class RTS(Distortion):
    """``RTS``: rotation uniform in ``angle`` degrees, scale uniform in ``scale``, then the
    digit at a uniformly random position on a ``canvas`` x ``canvas`` image.

    The position is uniform over the places where the digit's (rotated, scaled) ink bounding
    box lies fully inside the canvas; where it cannot fit, the digit is centred.
    """

    name = "RTS"

    def __init__(
        self,
        angle: Sequence[float] = (-45.0, 45.0),
        scale: Sequence[float] = (0.7, 1.2),
        canvas: int = 42,
    ) -> None:
        self.angle = _range(self.name, "angle", angle)
        self.scale = _range(self.name, "scale", scale, positive=True)
        self.canvas = _canvas(self.name, canvas)
        self.out_size = (self.canvas, self.canvas)

    def sample_params(self, batch_size: int, generator: torch.Generator) -> dict[str, Tensor]:
        u = _uniform(batch_size, 4, generator)
        return {
            "angle": _lerp(u[:, 0], self.angle),
            "scale": _lerp(u[:, 1], self.scale),
            # where in the range of positions that keep the digit inside: 0 left/top, 1 right
            "position": u[:, 2:4],
        }

    def matrices(self, x: Tensor, params: dict[str, Tensor]) -> Tensor:
        """Per-sample 3x3 output->source maps (float64, CPU); they depend on the ink box."""
        angle, scale = params["angle"], params["scale"]
        zero = torch.zeros(angle.shape[0], 2, dtype=torch.float64)
        inverse = _similarity(angle, scale, zero)
        linear = torch.linalg.inv(inverse[:, :2, :2])
        shift = _fit_shift(_ink_box(x), linear, self.in_size, self.out_size, params["position"])
        return _similarity(angle, scale, shift)

    def apply(self, x: Tensor, params: dict[str, Tensor]) -> Tensor:
        return _warp_matrix(x, self.matrices(x, params), self.out_size)


# ----------------------------------------------------------------------------- registry

DISTORTIONS: dict[str, type[Distortion]] = {
    "none": NoDistortion,
    "R": Rotation,
    "RTS": RTS,
}
"""Canonical name -> class."""

ALIASES: dict[str, str] = {}
"""Other accepted names -> canonical name."""


def _valid_names() -> str:
    names = list(DISTORTIONS)
    names += [f"{a} (= {c})" for a, c in ALIASES.items()]
    return ", ".join(names)


def make_distortion(name: str, **kwargs: Any) -> Distortion:
    """Build a distortion by name (case-insensitive), parameters as keywords.

    >>> make_distortion("RTS", scale=[0.8, 1.0]).out_size
    (42, 42)
    """
    lookup = {k.lower(): k for k in DISTORTIONS}
    lookup.update({a.lower(): c for a, c in ALIASES.items()})
    key = lookup.get(str(name).lower()) if isinstance(name, str) else None
    if key is None:
        raise ValueError(f"unknown distortion {name!r}; valid names: {_valid_names()}")
    cls = DISTORTIONS[key]
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(
            f"{key}: unknown parameter(s) {', '.join(unknown)}; "
            f"accepted: {', '.join(accepted) or '(none)'}"
        )
    return cls(**kwargs)
