"""The ``Distortion`` base class, parameter checks and the seeded random draws every recipe
shares (see the package docstring for the reproducibility rules)."""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

from .warp import DIGIT_SIZE, ink_box


def check_range(
    owner: str, field: str, value: Any, *, positive: bool = False
) -> tuple[float, float]:
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


def check_number(
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


def check_integer(owner: str, field: str, value: Any, *, minimum: int, hint: str = "") -> int:
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


def check_canvas(owner: str, value: Any, *, minimum: int = DIGIT_SIZE) -> int:
    return check_integer(
        owner,
        "canvas",
        value,
        minimum=minimum,
        hint=f" (the {DIGIT_SIZE}x{DIGIT_SIZE} digit must fit); use canvas={max(minimum, 42)}",
    )


def check_generator(generator: Any) -> torch.Generator:
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


def uniform(batch_size: int, k: int, generator: torch.Generator) -> Tensor:
    """``(B, k)`` float64 uniforms in [0, 1): row ``i`` belongs to sample ``i``."""
    return torch.rand(batch_size, k, generator=generator, dtype=torch.float64)


def lerp(u: Tensor, bounds: tuple[float, float]) -> Tensor:
    return bounds[0] + u * (bounds[1] - bounds[0])


def box_muller(u1: Tensor, u2: Tensor) -> Tensor:
    """Standard normals from two uniforms in [0, 1) (device- and chunk-independent)."""
    return torch.sqrt(-2.0 * torch.log1p(-u1)) * torch.cos(2.0 * math.pi * u2)


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
        params = self.sample_params(x.shape[0], check_generator(generator))
        if x.shape[0] == 0:
            return x.new_zeros(0, self.out_channels, *self.out_size)
        return self.apply(x, params)

    def with_boxes(self, x: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor | None]:
        """The images ``self(x, generator)`` gives, and each digit's ink box on them: ``(B, 4)``
        int64 ``(x0, y0, x1, y1)``, inclusive pixel indices (ground truth for evaluation only,
        e.g. the crop IoU). ``None`` for recipes without one digit on a 2-D image."""
        y = self(x, generator)
        if self.in_channels != 1 or y.dim() != 4:
            return y, None
        return y, ink_box(y)[:, [2, 0, 3, 1]]

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
