"""``P``: a random projective warp (scale, then the four corners moved by a Gaussian)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .base import Distortion, box_muller, check_number, check_range, lerp, uniform
from .warp import warp_by_matrix


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
        self.scale = check_range(self.name, "scale", scale, positive=True)
        self.corner_sigma = check_number(self.name, "corner_sigma", corner_sigma, minimum=0.0)

    def sample_params(self, batch_size: int, generator: torch.Generator) -> dict[str, Tensor]:
        u = uniform(batch_size, 17, generator)
        shift = box_muller(u[:, 1:9], u[:, 9:17]) * self.corner_sigma
        # corners in the order top-left, top-right, bottom-left, bottom-right; (dx, dy) pixels
        return {"scale": lerp(u[:, 0], self.scale), "corner_shift": shift.view(-1, 4, 2)}

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
        return warp_by_matrix(x, self.matrices(params), self.out_size, projective=True)
