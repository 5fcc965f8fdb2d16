"""Linear warps of Appendix A.4: ``none``, ``R`` (rotation) and ``RTS`` (rotation, scale,
translation on a larger canvas)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .base import Distortion, check_canvas, check_range, lerp, uniform
from .warp import fit_shift, ink_box, similarity_matrix, similarity_warp, warp_by_matrix


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
        self.angle = check_range(self.name, "angle", angle)

    def sample_params(self, batch_size: int, generator: torch.Generator) -> dict[str, Tensor]:
        u = uniform(batch_size, 1, generator)
        return {"angle": lerp(u[:, 0], self.angle)}

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
        self.angle = check_range(self.name, "angle", angle)
        self.scale = check_range(self.name, "scale", scale, positive=True)
        self.canvas = check_canvas(self.name, canvas)
        self.out_size = (self.canvas, self.canvas)

    def sample_params(self, batch_size: int, generator: torch.Generator) -> dict[str, Tensor]:
        u = uniform(batch_size, 4, generator)
        return {
            "angle": lerp(u[:, 0], self.angle),
            "scale": lerp(u[:, 1], self.scale),
            # where in the range of positions that keep the digit inside: 0 left/top, 1 right
            "position": u[:, 2:4],
        }

    def matrices(self, x: Tensor, params: dict[str, Tensor]) -> Tensor:
        """Per-sample 3x3 output->source maps (float64, CPU); they depend on the ink box."""
        angle, scale = params["angle"], params["scale"]
        zero = torch.zeros(angle.shape[0], 2, dtype=torch.float64)
        inverse = similarity_matrix(angle, scale, zero)
        linear = torch.linalg.inv(inverse[:, :2, :2])
        shift = fit_shift(ink_box(x), linear, self.in_size, self.out_size, params["position"])
        return similarity_matrix(angle, scale, shift)

    def apply(self, x: Tensor, params: dict[str, Tensor]) -> Tensor:
        return warp_by_matrix(x, self.matrices(x, params), self.out_size)
