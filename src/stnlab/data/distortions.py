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
    "Addition",
    "Cluttered",
    "Distortion",
    "Elastic",
    "NoDistortion",
    "Projective",
    "RTS",
    "Rotation",
    "SequenceBuilder",
    "make_distortion",
    "make_sequence",
    "sequence_targets",
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


def _number(owner: str, field: str, value: Any, *, minimum: float, strict: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{owner}: {field}={value!r} must be a number") from None
    if not math.isfinite(v) or v < minimum or (strict and v == minimum):
        op = ">" if strict else ">="
        raise ValueError(f"{owner}: {field}={value!r} must be {op} {minimum:g}")
    return v


def _integer(owner: str, field: str, value: Any, *, minimum: int, hint: str = "") -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        and not (isinstance(value, float) and value.is_integer())
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
            "generator must be a torch.Generator on the CPU, e.g. torch.Generator().manual_seed(0)"
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


def _grid(
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


def _warp_matrix(
    x: Tensor, matrix: Tensor, out_size: tuple[int, int], *, projective: bool = False
) -> Tensor:
    """Warp ``x`` with per-sample 3x3 maps ``matrix`` (float64, CPU) that take centred
    *output* coordinates to centred *source* coordinates."""
    in_size = (x.shape[-2], x.shape[-1])
    full = _centred_to_normalised(in_size) @ matrix @ _pixels_to_centred(out_size)
    return _sample(x, _grid(full, out_size, x.device, projective))


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


def similarity_warp(x: Tensor, angle_deg: Tensor, scale: Tensor,
                    out_size: tuple[int, int]) -> Tensor:
    """Rotate each image by ``angle_deg`` and scale it by ``scale`` (per sample) about its
    centre, onto an ``out_size`` image with the same centre: no shift, so angle 0 and scale 1
    onto the input's size return the input exactly."""
    zero = torch.zeros(angle_deg.shape[0], 2, dtype=torch.float64)
    return _warp_matrix(x, _similarity(angle_deg.double(), scale.double(), zero), out_size)


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
        if x.shape[0] == 0:
            return x.new_zeros(0, self.out_channels, *self.out_size)
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
                f"{self.name}: expects float images in [0, 1], got {x.dtype}; use x.float() / 255"
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
        return similarity_warp(x, angle, torch.ones_like(angle), self.out_size)


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


def _homography(src: Tensor, dst: Tensor) -> Tensor:
    """3x3 maps (float64) taking the 4 points ``src`` (B, 4, 2) to ``dst`` (B, 4, 2), with
    ``h[2, 2] = 1``; a degenerate quadrilateral gets the identity."""
    b = src.shape[0]
    x, y = src[..., 0], src[..., 1]
    u, v = dst[..., 0], dst[..., 1]
    zero, one = torch.zeros_like(x), torch.ones_like(x)
    rows_u = torch.stack([x, y, one, zero, zero, zero, -u * x, -u * y], dim=-1)
    rows_v = torch.stack([zero, zero, zero, x, y, one, -v * x, -v * y], dim=-1)
    a = torch.cat([rows_u, rows_v], dim=1)  # (B, 8, 8)
    rhs = torch.cat([u, v], dim=1).unsqueeze(-1)
    sol, info = torch.linalg.solve_ex(a, rhs)
    h = torch.cat([sol[..., 0], torch.ones(b, 1, dtype=sol.dtype)], dim=1).view(b, 3, 3)
    eye = torch.eye(3, dtype=h.dtype).expand(b, 3, 3)
    ok = (info == 0) & torch.isfinite(h).all(dim=(1, 2))
    return torch.where(ok[:, None, None], h, eye)


class Projective(Distortion):
    """``P``: scale uniform in ``scale`` about the centre, then a projective warp that moves
    each of the four corners of the 28x28 frame by Gaussian noise of ``corner_sigma`` pixels."""

    name = "P"

    def __init__(self, scale: Sequence[float] = (0.75, 1.0), corner_sigma: float = 5.0) -> None:
        self.scale = _range(self.name, "scale", scale, positive=True)
        self.corner_sigma = _number(self.name, "corner_sigma", corner_sigma, minimum=0.0)

    def sample_params(self, batch_size: int, generator: torch.Generator) -> dict[str, Tensor]:
        u = _uniform(batch_size, 17, generator)
        shift = _box_muller(u[:, 1:9], u[:, 9:17]) * self.corner_sigma
        # corners in the order top-left, top-right, bottom-left, bottom-right; (dx, dy) pixels
        return {"scale": _lerp(u[:, 0], self.scale), "corner_shift": shift.view(-1, 4, 2)}

    def matrices(self, params: dict[str, Tensor]) -> Tensor:
        """Per-sample 3x3 output->source maps (float64, CPU)."""
        scale, shift = params["scale"], params["corner_shift"]
        b = scale.shape[0]
        half = torch.tensor([self.out_size[1] / 2.0, self.out_size[0] / 2.0], dtype=torch.float64)
        corners = torch.tensor(
            [[-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0], [1.0, 1.0]], dtype=torch.float64
        ).expand(b, 4, 2)
        # work in units of the half frame (well conditioned): moved corners -> frame corners
        h_inv = _homography(corners + shift / half, corners)
        to_units = torch.diag(torch.cat([1.0 / half, torch.ones(1, dtype=torch.float64)]))
        back = torch.zeros(b, 3, 3, dtype=torch.float64)
        back[:, 0, 0] = half[0] / scale
        back[:, 1, 1] = half[1] / scale
        back[:, 2, 2] = 1.0
        return back @ h_inv @ to_units

    def apply(self, x: Tensor, params: dict[str, Tensor]) -> Tensor:
        return _warp_matrix(x, self.matrices(params), self.out_size, projective=True)


def _tps_kernel(r2: Tensor) -> Tensor:
    """Thin-plate radial basis ``r^2 log r^2`` (0 at r = 0)."""
    return torch.xlogy(r2, r2)


class Elastic(Distortion):
    """``E``: scale uniform in ``scale`` about the centre, then an elastic warp: a thin-plate
    spline through ``grid_size`` x ``grid_size`` control points on a regular grid spanning the
    frame, each moved by Gaussian noise of ``control_sigma`` pixels.

    The spline is the sampling map (output -> source): at the regular control point ``c_k`` of
    the output it samples the source at ``(c_k - shift_k) / scale``, i.e. the content there
    moves by ``shift_k``, and it interpolates smoothly (minimum bending energy) in between.
    With the control points fixed on the output grid, the spline's basis is the same for every
    sample, so the whole batch is one small matrix product.
    """

    name = "E"

    def __init__(
        self, scale: Sequence[float] = (0.75, 1.0), control_sigma: float = 1.5, grid_size: int = 4
    ) -> None:
        self.scale = _range(self.name, "scale", scale, positive=True)
        self.control_sigma = _number(self.name, "control_sigma", control_sigma, minimum=0.0)
        self.grid_size = _integer(
            self.name, "grid_size", grid_size, minimum=2, hint=" (a 2x2 grid is the least)"
        )
        self._basis: dict[str, Tensor] = {}

    @property
    def num_control(self) -> int:
        return self.grid_size**2

    def control_points(self) -> Tensor:
        """``(K, 2)`` control points ``(x, y)`` in units of the half frame (row-major)."""
        t = torch.linspace(-1.0, 1.0, self.grid_size, dtype=torch.float64)
        gy, gx = torch.meshgrid(t, t, indexing="ij")
        return torch.stack([gx, gy], dim=-1).reshape(-1, 2)

    def basis(self, device: torch.device) -> Tensor:
        """``(H*W, K)`` float32: the spline through values ``v`` at the control points takes
        the values ``basis @ v`` at the output pixel centres (built in float64, cached)."""
        key = str(device)
        if key not in self._basis:
            ctrl = self.control_points()
            k = ctrl.shape[0]
            h, w = self.out_size
            pix = _pixel_grid(h, w, torch.device("cpu"))[:, :2].to(torch.float64)
            q = (pix - torch.tensor([(w - 1) / 2.0, (h - 1) / 2.0], dtype=torch.float64)) / (
                torch.tensor([w / 2.0, h / 2.0], dtype=torch.float64)
            )
            system = torch.zeros(k + 3, k + 3, dtype=torch.float64)
            system[:k, :k] = _tps_kernel(torch.cdist(ctrl, ctrl).square())
            poly = torch.cat([torch.ones(k, 1, dtype=torch.float64), ctrl], dim=1)
            system[:k, k:] = poly
            system[k:, :k] = poly.T
            # coefficients = inverse(system)[:, :k] @ values; evaluate them at the pixels
            evaluate = torch.cat(
                [
                    _tps_kernel(torch.cdist(q, ctrl).square()),
                    torch.ones(h * w, 1, dtype=q.dtype),
                    q,
                ],
                dim=1,
            )
            basis = evaluate @ torch.linalg.inv(system)[:, :k]
            self._basis[key] = basis.to(device=device, dtype=torch.float32)
        return self._basis[key]

    def sample_params(self, batch_size: int, generator: torch.Generator) -> dict[str, Tensor]:
        k = self.num_control
        u = _uniform(batch_size, 1 + 4 * k, generator)
        shift = _box_muller(u[:, 1 : 1 + 2 * k], u[:, 1 + 2 * k :]) * self.control_sigma
        return {"scale": _lerp(u[:, 0], self.scale), "control_shift": shift.view(-1, k, 2)}

    def targets(self, params: dict[str, Tensor]) -> Tensor:
        """``(B, K, 2)`` float64: where each control point samples the source, in
        grid_sample's [-1, 1] units of the source."""
        scale, shift = params["scale"], params["control_shift"]
        half = torch.tensor([self.out_size[1] / 2.0, self.out_size[0] / 2.0], dtype=torch.float64)
        in_half = torch.tensor([self.in_size[1] / 2.0, self.in_size[0] / 2.0], dtype=torch.float64)
        centred = (self.control_points() * half - shift) / scale[:, None, None]
        return centred / in_half

    def apply(self, x: Tensor, params: dict[str, Tensor]) -> Tensor:
        b = x.shape[0]
        h, w = self.out_size
        targets = self.targets(params).to(device=x.device, dtype=torch.float32)
        grid = torch.matmul(self.basis(x.device), targets)  # (B, H*W, 2)
        return _sample(x, grid.view(b, h, w, 2))


def _paste(x: Tensor, offset_y: Tensor, offset_x: Tensor, size: tuple[int, int]) -> Tensor:
    """Put image ``b`` of ``x`` (B, C, h, w) at integer offset ``(offset_y[b], offset_x[b])``
    (its top-left pixel) on a black ``size`` canvas; what falls outside is cut."""
    b, c, h, w = x.shape
    ys = torch.arange(size[0], device=x.device)[None] - offset_y[:, None]  # (B, H)
    xs = torch.arange(size[1], device=x.device)[None] - offset_x[:, None]  # (B, W)
    inside = ((ys >= 0) & (ys < h))[:, :, None] & ((xs >= 0) & (xs < w))[:, None, :]
    idx = ys.clamp(0, h - 1)[:, :, None] * w + xs.clamp(0, w - 1)[:, None, :]  # (B, H, W)
    out = x.reshape(b, c, h * w).gather(2, idx.view(b, 1, -1).expand(b, c, -1))
    return out.view(b, c, *size) * inside[:, None]


def _rect_mask(top: Tensor, left: Tensor, side: int, size: tuple[int, int]) -> Tensor:
    """(B, H, W) bool: the ``side`` x ``side`` squares with top-left ``(top, left)``."""
    ys = torch.arange(size[0], device=top.device)[None]
    xs = torch.arange(size[1], device=top.device)[None]
    rows = (ys >= top[:, None]) & (ys < top[:, None] + side)
    cols = (xs >= left[:, None]) & (xs < left[:, None] + side)
    return rows[:, :, None] & cols[:, None, :]


def _uniform_int(u: Tensor, low: Tensor | int, high: Tensor | int) -> Tensor:
    """Integers uniform in ``[low, high]`` (inclusive) from uniforms ``u`` in [0, 1)."""
    low_t = torch.as_tensor(low, dtype=torch.float64)
    span = torch.as_tensor(high, dtype=torch.float64) - low_t + 1.0
    return torch.minimum(torch.floor(low_t + u * span), low_t + span - 1.0).long()


class Cluttered(Distortion):
    """``cluttered`` (alias ``T``): the digit, unchanged, at a uniformly random position on a
    ``canvas`` x ``canvas`` image (its ink fully inside), plus ``num_clutter`` patches of
    ``clutter_size`` x ``clutter_size`` pixels cut from *other* random digits of the batch
    (around their ink) and pasted at random places. Patches and digit combine by maximum.

    Clutter never hides the digit: a patch is placed (among ``max_tries`` random places, the
    first that qualifies) only if the patches' footprints then cover at most
    ``max_digit_cover`` of the digit's ink pixels; otherwise it is left out. A batch of one
    image cuts its clutter from itself.
    """

    name = "cluttered"

    def __init__(
        self,
        canvas: int = 60,
        num_clutter: int = 6,
        clutter_size: int = 6,
        max_digit_cover: float = 0.5,
        max_tries: int = 10,
    ) -> None:
        self.canvas = _canvas(self.name, canvas)
        self.num_clutter = _integer(self.name, "num_clutter", num_clutter, minimum=0)
        self.clutter_size = _integer(self.name, "clutter_size", clutter_size, minimum=1)
        if self.clutter_size > DIGIT_SIZE:
            raise ValueError(
                f"{self.name}: clutter_size={clutter_size!r} is larger than the "
                f"{DIGIT_SIZE}x{DIGIT_SIZE} digit it is cut from; use clutter_size <= {DIGIT_SIZE}"
            )
        self.max_digit_cover = _number(self.name, "max_digit_cover", max_digit_cover, minimum=0.0)
        if self.max_digit_cover >= 1.0:
            raise ValueError(
                f"{self.name}: max_digit_cover={max_digit_cover!r} must be < 1 (the clutter "
                "must never cover the whole digit); use e.g. max_digit_cover=0.5"
            )
        self.max_tries = _integer(self.name, "max_tries", max_tries, minimum=1)
        self.out_size = (self.canvas, self.canvas)

    def sample_params(self, batch_size: int, generator: torch.Generator) -> dict[str, Tensor]:
        n, t = self.num_clutter, self.max_tries
        u = _uniform(batch_size, 2 + n * (3 + 2 * t), generator)
        position = u[:, :2]
        rest = u[:, 2:].reshape(batch_size, n, 3 + 2 * t)
        rows = torch.arange(batch_size)[:, None]
        if batch_size > 1:  # another image of the batch, uniformly
            source = (rows + 1 + _uniform_int(rest[..., 0], 0, batch_size - 2)) % batch_size
        else:
            source = rows.expand(batch_size, n)
        last = self.canvas - self.clutter_size
        return {
            "position": position,  # digit: 0 = left/top .. 1 = right/bottom of its free range
            "source": source,  # (B, N) index of the image each patch is cut from
            "crop": rest[..., 1:3],  # (B, N, 2) where in the source's ink box (x, y)
            "places": _uniform_int(rest[..., 3:], 0, last).view(batch_size, n, t, 2),
        }

    def layout(
        self, x: Tensor, params: dict[str, Tensor], with_footprint: bool = True
    ) -> dict[str, Tensor]:
        """The parts of the picture: ``digit`` and ``clutter`` (B, 1, H, W), the patches'
        ``footprint`` (B, H, W) bool, and ``kept`` (B, N) bool: which patches were placed."""
        b = x.shape[0]
        dev = x.device
        size, cs = self.out_size, self.clutter_size
        box = _ink_box(x)  # (B, 4) on the CPU: y0, y1, x0, x1
        pos = params["position"]
        oy = _uniform_int(pos[:, 1], -box[:, 0], size[0] - 1 - box[:, 1])
        ox = _uniform_int(pos[:, 0], -box[:, 2], size[1] - 1 - box[:, 3])
        digit = _paste(x, oy.to(dev), ox.to(dev), size)

        # patches, cut around a random point of the source's ink box
        source = params["source"]
        sbox = box[source]  # (B, N, 4)
        cy = _uniform_int(params["crop"][..., 1], sbox[..., 0], sbox[..., 1])
        cx = _uniform_int(params["crop"][..., 0], sbox[..., 2], sbox[..., 3])
        top = (cy - cs // 2).clamp(0, DIGIT_SIZE - cs)
        left = (cx - cs // 2).clamp(0, DIGIT_SIZE - cs)
        ar = torch.arange(cs)
        pix = (top[..., None, None] + ar[:, None]) * DIGIT_SIZE + left[..., None, None] + ar
        n = source.shape[1]
        patches = x[:, 0].reshape(b, -1)[
            source.to(dev)[..., None], pix.reshape(b, n, cs * cs).to(dev)
        ]

        # place them one after the other, each only where the digit stays visible enough;
        # the digit's ink is all inside the canvas, so count it in the digit's own frame
        ink = x[:, 0] > INK_THRESHOLD  # (B, 28, 28)
        limit = torch.floor(self.max_digit_cover * ink.sum(dim=(1, 2)))
        covered = torch.zeros(b, device=dev)
        local_fp = torch.zeros_like(ink)
        places = params["places"].to(dev)
        oy_d, ox_d = oy.to(dev)[:, None], ox.to(dev)[:, None]
        kept = torch.zeros(b, n, dtype=torch.bool, device=dev)
        chosen = torch.zeros(b, n, 2, dtype=torch.long, device=dev)
        w1 = DIGIT_SIZE + 1
        for j in range(n):
            free = (ink & ~local_fp).float()
            integral = F.pad(free.cumsum(1).cumsum(2), (1, 0, 1, 0)).view(b, -1)
            py, px = places[:, j, :, 1] - oy_d, places[:, j, :, 0] - ox_d  # (B, T), local
            y_a, y_b = py.clamp(0, DIGIT_SIZE), (py + cs).clamp(0, DIGIT_SIZE)
            x_a, x_b = px.clamp(0, DIGIT_SIZE), (px + cs).clamp(0, DIGIT_SIZE)
            new = (
                integral.gather(1, y_b * w1 + x_b)
                - integral.gather(1, y_a * w1 + x_b)
                - integral.gather(1, y_b * w1 + x_a)
                + integral.gather(1, y_a * w1 + x_a)
            )
            ok = covered[:, None] + new <= limit[:, None]
            has = ok.any(dim=1)
            first = ok.float().argmax(dim=1, keepdim=True)
            covered = covered + torch.where(has, new.gather(1, first)[:, 0], 0.0)
            local_fp |= has[:, None, None] & _rect_mask(
                py.gather(1, first)[:, 0], px.gather(1, first)[:, 0], cs, ink.shape[1:]
            )
            kept[:, j] = has
            chosen[:, j] = places[:, j].gather(1, first[..., None].expand(b, 1, 2))[:, 0].flip(1)

        clutter = torch.zeros(b, size[0] * size[1], device=dev)
        if n:
            ar_d = ar.to(dev)
            where = (chosen[..., 0, None, None] + ar_d[:, None]) * size[1] + (
                chosen[..., 1, None, None] + ar_d
            )
            values = patches * kept[..., None]
            clutter.scatter_reduce_(1, where.view(b, -1), values.view(b, -1), reduce="amax")
        parts = {"digit": digit, "clutter": clutter.view(b, 1, *size), "kept": kept}
        if with_footprint:
            footprint = torch.zeros(b, *size, dtype=torch.bool, device=dev)
            for j in range(n):
                rect = _rect_mask(chosen[:, j, 0], chosen[:, j, 1], cs, size)
                footprint |= kept[:, j, None, None] & rect
            parts["footprint"] = footprint
        return parts

    def apply(self, x: Tensor, params: dict[str, Tensor]) -> Tensor:
        parts = self.layout(x, params, with_footprint=False)
        return torch.maximum(parts["digit"], parts["clutter"])


class Addition(Distortion):
    """``addition``: two digits as two channels, each RTS-distorted independently (same
    parameters as ``RTS``), so ``(B, 2, 28, 28) -> (B, 2, canvas, canvas)``. The label (their
    sum, 19 classes) is the dataset's business."""

    name = "addition"
    in_channels = 2
    out_channels = 2

    def __init__(
        self,
        angle: Sequence[float] = (-45.0, 45.0),
        scale: Sequence[float] = (0.7, 1.2),
        canvas: int = 42,
    ) -> None:
        try:
            self.rts = RTS(angle=angle, scale=scale, canvas=canvas)
        except ValueError as err:
            raise ValueError(str(err).replace("RTS:", f"{self.name}:", 1)) from None
        self.angle, self.scale, self.canvas = self.rts.angle, self.rts.scale, self.rts.canvas
        self.out_size = self.rts.out_size

    def sample_params(self, batch_size: int, generator: torch.Generator) -> dict[str, Tensor]:
        p = self.rts.sample_params(2 * batch_size, generator)  # rows 2b, 2b + 1: image b
        return {k: v.view(batch_size, 2, *v.shape[1:]) for k, v in p.items()}

    def apply(self, x: Tensor, params: dict[str, Tensor]) -> Tensor:
        b = x.shape[0]
        flat = {k: v.reshape(2 * b, *v.shape[2:]) for k, v in params.items()}
        y = self.rts.apply(x.reshape(2 * b, 1, *x.shape[2:]), flat)
        return y.view(b, 2, *self.out_size)


# ----------------------------------------------------------------------------- sequences


class SequenceBuilder:
    """Multi-digit sequences, an offline twin of SVHN's multi-digit task: the first
    ``lengths[b]`` of the digits ``(B, L, 28, 28)`` side by side on a ``canvas`` x ``canvas``
    image -> ``(B, 1, canvas, canvas)``.

    Each sequence gets one scale, uniform in ``scale`` but shrunk where needed so that the
    whole sequence fits; consecutive digits' ink boxes are ``gap`` source pixels apart (uniform
    per pair); each digit is jittered vertically by up to ``jitter`` output pixels; the sequence
    sits at a uniformly random place with its ink inside the canvas. Digits combine by maximum.
    """

    def __init__(
        self,
        canvas: int = 64,
        scale: Sequence[float] = (0.8, 1.6),
        gap: Sequence[float] = (0.0, 4.0),
        jitter: float = 3.0,
    ) -> None:
        owner = "sequence"
        self.canvas = _canvas(owner, canvas)
        self.scale = _range(owner, "scale", scale, positive=True)
        self.gap = _range(owner, "gap", gap)
        if self.gap[0] < 0:
            raise ValueError(f"{owner}: gap={gap!r} must be >= 0 (digits would overlap)")
        self.jitter = _number(owner, "jitter", jitter, minimum=0.0)
        if 2 * self.jitter >= self.canvas - 2:
            raise ValueError(f"{owner}: jitter={jitter!r} is too large for canvas={canvas}")
        self.out_size = (self.canvas, self.canvas)

    def params(self) -> dict[str, Any]:
        return {
            "name": "sequence",
            "canvas": self.canvas,
            "scale": list(self.scale),
            "gap": list(self.gap),
            "jitter": self.jitter,
        }

    def sample_params(
        self, batch_size: int, max_len: int, generator: torch.Generator
    ) -> dict[str, Tensor]:
        u = _uniform(batch_size, 3 + 2 * max_len, generator)
        return {
            "scale": _lerp(u[:, 0], self.scale),  # before shrinking to fit
            "position": u[:, 1:3],
            "gap": _lerp(u[:, 3 : 3 + max_len], self.gap),  # after digit k (the last unused)
            "jitter": (2.0 * u[:, 3 + max_len :] - 1.0) * self.jitter,
        }

    def check(self, digits: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        if not isinstance(digits, Tensor) or digits.dim() != 4 or digits.shape[2:] != (28, 28):
            got = tuple(digits.shape) if isinstance(digits, Tensor) else type(digits).__name__
            raise ValueError(f"sequence: expects digits of shape (B, L, 28, 28), got {got}")
        if not digits.is_floating_point():
            raise ValueError("sequence: expects float digits in [0, 1]; use x.float() / 255")
        lengths = torch.as_tensor(lengths).cpu()
        b, max_len = digits.shape[:2]
        if lengths.shape != (b,) or lengths.is_floating_point():
            raise ValueError(
                f"sequence: lengths must be B={b} integers, got {tuple(lengths.shape)}"
            )
        if b and (int(lengths.min()) < 1 or int(lengths.max()) > max_len):
            raise ValueError(
                f"sequence: lengths must lie in [1, {max_len}] (L = digits.shape[1]), got "
                f"[{int(lengths.min())}, {int(lengths.max())}]"
            )
        if digits.numel() and float(digits.amax()) > 1.0 + 1e-3:
            raise ValueError("sequence: expects digits in [0, 1]; divide by 255")
        return digits.float(), lengths.long()

    def matrices(self, digits: Tensor, lengths: Tensor, params: dict[str, Tensor]) -> Tensor:
        """``(B, L, 3, 3)`` output->source maps (float64, CPU) of every digit slot."""
        b, max_len = digits.shape[:2]
        box = _ink_box(digits.reshape(b * max_len, 1, 28, 28)).view(b, max_len, 4).double()
        width = box[..., 3] - box[..., 2] + 1.0
        height = box[..., 1] - box[..., 0] + 1.0
        used = torch.arange(max_len)[None] < lengths[:, None]  # (B, L)
        gaps = torch.where(
            used & (torch.arange(max_len)[None] < lengths[:, None] - 1), params["gap"], 0.0
        )
        advance = torch.where(used, width, 0.0) + gaps
        total_w = advance.sum(dim=1)  # source pixels
        total_h = torch.where(used, height, 0.0).amax(dim=1)
        room = self.canvas - 2.0 * self.jitter - 1.0
        scale = torch.minimum(params["scale"], torch.minimum(room / total_w, room / total_h))
        # ink box of the whole sequence, then its centre on the canvas
        span_x, span_y = scale * total_w, scale * total_h + 2.0 * self.jitter
        free_x = (self.canvas - span_x).clamp_min(0.0)
        free_y = (self.canvas - span_y).clamp_min(0.0)
        left = -self.canvas / 2.0 + params["position"][:, 0] * free_x
        centre_y = -self.canvas / 2.0 + params["position"][:, 1] * free_y + span_y / 2.0
        start = torch.cumsum(advance, dim=1) - advance  # left edge of each digit, source px
        qx = left[:, None] + scale[:, None] * (start + width / 2.0)
        qy = centre_y[:, None] + params["jitter"]
        # the centre of each ink box (centred source coordinates) lands on (qx, qy)
        cx = (box[..., 2] + box[..., 3]) / 2.0 - 13.5
        cy = (box[..., 0] + box[..., 1]) / 2.0 - 13.5
        m = torch.zeros(b, max_len, 3, 3, dtype=torch.float64)
        inv = 1.0 / scale[:, None]
        m[..., 0, 0] = inv
        m[..., 1, 1] = inv
        m[..., 0, 2] = cx - qx * inv
        m[..., 1, 2] = cy - qy * inv
        m[..., 2, 2] = 1.0
        return m

    def apply(self, digits: Tensor, lengths: Tensor, params: dict[str, Tensor]) -> Tensor:
        b, max_len = digits.shape[:2]
        h, w = self.out_size
        m = self.matrices(digits, lengths, params)
        used = torch.arange(max_len)[None] < lengths[:, None]
        slot_b, slot_k = used.nonzero(as_tuple=True)  # only the digits in use
        m = m[slot_b, slot_k]  # (N, 3, 3)
        # Only canvas pixels within the digit's mapped 28x28 frame (plus the one pixel that
        # bilinear sampling reaches beyond it) can be non-zero: sample a window around it.
        scale = 1.0 / m[:, 0, 0]
        centre = torch.stack([-m[:, 0, 2], -m[:, 1, 2]], dim=1) * scale[:, None]
        reach = (DIGIT_SIZE / 2.0 + 0.5) * scale[:, None]
        offset = torch.tensor([(w - 1) / 2.0, (h - 1) / 2.0], dtype=torch.float64)
        first = torch.floor(centre - reach + offset).long()  # (N, 2): window's (j0, i0)
        size = int((torch.ceil(centre + reach + offset).long() - first).max()) + 1 if len(m) else 1
        shift = torch.eye(3, dtype=torch.float64).repeat(len(m), 1, 1)
        shift[:, :2, 2] = first.double()
        full = _centred_to_normalised((28, 28)) @ m @ _pixels_to_centred(self.out_size) @ shift
        src = digits[slot_b.to(digits.device), slot_k.to(digits.device)].unsqueeze(1)
        vals = _sample(src, _grid(full, (size, size), digits.device, projective=False))
        # paste the windows on the canvases, overlapping digits by maximum
        dev = digits.device
        ar = torch.arange(size, device=dev)
        first = first.to(dev)
        rows = first[:, 1, None] + ar  # (N, size)
        cols = first[:, 0, None] + ar
        inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
        flat = slot_b.to(dev)[:, None, None] * (h * w) + rows[:, :, None] * w + cols[:, None, :]
        flat = torch.where(inside, flat, b * h * w)  # outside the canvas: a discarded slot
        out = torch.zeros(b * h * w + 1, device=dev, dtype=vals.dtype)
        out.scatter_reduce_(0, flat.reshape(-1), vals.reshape(-1), reduce="amax")
        return out[:-1].view(b, 1, h, w)

    def __call__(self, digits: Tensor, lengths: Tensor, generator: torch.Generator) -> Tensor:
        digits, lengths = self.check(digits, lengths)
        params = self.sample_params(digits.shape[0], digits.shape[1], _check_generator(generator))
        if digits.shape[0] == 0:
            return digits.new_zeros(0, 1, *self.out_size)
        return self.apply(digits, lengths, params)


def make_sequence(
    digits: Tensor, lengths: Tensor, generator: torch.Generator, canvas: int = 64, **kwargs: Any
) -> Tensor:
    """``(B, L, 28, 28)`` digits and ``(B,)`` lengths in ``[1, L]`` -> ``(B, 1, canvas,
    canvas)`` images of the first ``lengths[b]`` digits side by side. See ``SequenceBuilder``
    for the keywords (``scale``, ``gap``, ``jitter``) and ``sequence_targets`` for labels."""
    return SequenceBuilder(canvas=canvas, **kwargs)(digits, lengths, generator)


def sequence_targets(labels: Tensor, lengths: Tensor, blank: int = 10) -> Tensor:
    """``(B, L)`` digit labels and ``(B,)`` lengths -> ``(B, L)`` int64 targets with ``blank``
    after each sequence's end (the SVHN multi-digit convention: length + up to L digits)."""
    labels = torch.as_tensor(labels).long()
    lengths = torch.as_tensor(lengths, device=labels.device).long()
    used = torch.arange(labels.shape[1], device=labels.device)[None] < lengths[:, None]
    return torch.where(used, labels, blank)


# ----------------------------------------------------------------------------- registry

DISTORTIONS: dict[str, type[Distortion]] = {
    "none": NoDistortion,
    "R": Rotation,
    "RTS": RTS,
    "P": Projective,
    "E": Elastic,
    "cluttered": Cluttered,
    "addition": Addition,
}
"""Canonical name -> class."""

ALIASES: dict[str, str] = {"T": "cluttered"}
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
