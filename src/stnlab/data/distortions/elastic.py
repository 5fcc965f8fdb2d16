"""``E``: an elastic warp, a thin-plate spline through a 4x4 grid of moved control points."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .base import Distortion, box_muller, check_integer, check_number, check_range, lerp, uniform
from .warp import pixel_grid, sample_bilinear


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
        self.scale = check_range(self.name, "scale", scale, positive=True)
        self.control_sigma = check_number(self.name, "control_sigma", control_sigma, minimum=0.0)
        self.grid_size = check_integer(
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
            pix = pixel_grid(h, w, torch.device("cpu"))[:, :2].to(torch.float64)
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
        u = uniform(batch_size, 1 + 4 * k, generator)
        shift = box_muller(u[:, 1 : 1 + 2 * k], u[:, 1 + 2 * k :]) * self.control_sigma
        return {"scale": lerp(u[:, 0], self.scale), "control_shift": shift.view(-1, k, 2)}

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
        return sample_bilinear(x, grid.view(b, h, w, 2))
