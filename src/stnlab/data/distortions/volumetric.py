"""``volumetric``: MNIST digits lifted into 3-D volumes, rotated, scaled and placed at random
(the distorted-volume task), and ``orthogonal_projections`` to look at them.

Geometry
--------
A volume is ``(B, 1, D, H, W)`` with ``D = H = W = canvas``; voxel ``(k, i, j)`` has its centre
at ``(x, y, z) = (j, i, k)`` (``x`` along W, ``y`` along H, ``z`` along D, as the 2-D recipes'
``(x, y) = (j, i)``). The digit is extruded into a slab ``thickness`` voxels thick along ``z``
(the 28x28 image repeated), then mapped by ``q = scale * R p + shift`` about its centre, with
``R = Rz(a_z) Ry(a_y) Rx(a_x)``: right-handed rotations about the ``x``, ``y`` and ``z`` axes
(``x`` first). The output is sampled trilinearly from the slab (outside it reads 0, so the
values stay in [0, 1]); ``angle=[0, 0]``, ``scale=[1, 1]``, ``translate=False`` gives the slab
centred in the volume (exact up to float32 rounding, ~1e-6).

Randomness: one ``uniform(B, 7)`` row per sample (three angles, the scale, three positions),
so fixed validation/test volumes are reproducible and chunking a batch changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Distortion, check_integer, check_range, lerp, uniform
from .warp import DIGIT_SIZE, ink_box


def _rotations(angles_deg: Tensor) -> Tensor:
    """``(B, 3)`` angles (degrees, about x, y, z) -> ``(B, 3, 3)`` ``Rz @ Ry @ Rx`` (float64)."""
    a = torch.deg2rad(angles_deg.double())
    c, s = torch.cos(a), torch.sin(a)
    one, zero = torch.ones_like(a[:, 0]), torch.zeros_like(a[:, 0])

    def mat(rows):
        return torch.stack([torch.stack(r, -1) for r in rows], -2)

    rx = mat([[one, zero, zero], [zero, c[:, 0], -s[:, 0]], [zero, s[:, 0], c[:, 0]]])
    ry = mat([[c[:, 1], zero, s[:, 1]], [zero, one, zero], [-s[:, 1], zero, c[:, 1]]])
    rz = mat([[c[:, 2], -s[:, 2], zero], [s[:, 2], c[:, 2], zero], [zero, zero, one]])
    return rz @ ry @ rx


class Volumetric(Distortion):
    """``volumetric``: the digit as a slab ``thickness`` voxels thick in a ``canvas``^3
    volume, rotated about each axis by an angle uniform in ``angle`` degrees, scaled by a
    factor uniform in ``scale``, and (``translate``) placed uniformly at random where its
    (rotated, scaled) ink box lies inside the volume; where it cannot fit, it is centred.
    ``translate=False`` keeps the digit's centre at the volume's centre.
    """

    name = "volumetric"

    def __init__(
        self,
        angle: Sequence[float] = (-45.0, 45.0),
        scale: Sequence[float] = (0.8, 1.1),
        canvas: int = 32,
        thickness: int = 4,
        translate: bool = True,
    ) -> None:
        self.angle = check_range(self.name, "angle", angle)
        self.scale = check_range(self.name, "scale", scale, positive=True)
        self.canvas = check_integer(self.name, "canvas", canvas, minimum=16)
        self.thickness = check_integer(self.name, "thickness", thickness, minimum=1)
        if self.thickness > self.canvas:
            raise ValueError(
                f"{self.name}: thickness={thickness} is thicker than the canvas ({self.canvas})"
            )
        if not isinstance(translate, bool):
            raise ValueError(f"{self.name}: translate={translate!r} must be true or false")
        self.translate = translate
        self.out_size = (self.canvas, self.canvas, self.canvas)

    def sample_params(self, batch_size: int, generator: torch.Generator) -> dict[str, Tensor]:
        u = uniform(batch_size, 7, generator)
        return {
            "angle": lerp(u[:, 0:3], self.angle),  # degrees about x, y, z
            "scale": lerp(u[:, 3], self.scale),
            # where in the range of positions that keep the ink inside: 0 low, 1 high end
            "position": u[:, 4:7],
        }

    def linear(self, params: dict[str, Tensor]) -> Tensor:
        """``(B, 3, 3)`` float64 forward maps ``scale * R`` (slab -> volume, about centres)."""
        return params["scale"].double()[:, None, None] * _rotations(params["angle"])

    def shifts(self, x: Tensor, params: dict[str, Tensor]) -> Tensor:
        """``(B, 3)`` centred position of the slab's centre in the volume (float64, CPU)."""
        lin = self.linear(params)
        if not self.translate:
            return torch.zeros(lin.shape[0], 3, dtype=torch.float64)
        box = ink_box(x).to(torch.float64)  # (y0, y1, x0, x1)
        c = (DIGIT_SIZE - 1) / 2.0
        half_t = self.thickness / 2.0
        lo_xyz = torch.stack(
            [box[:, 2] - 0.5 - c, box[:, 0] - 0.5 - c, torch.full_like(box[:, 0], -half_t)], 1
        )
        hi_xyz = torch.stack(
            [box[:, 3] + 0.5 - c, box[:, 1] + 0.5 - c, torch.full_like(box[:, 0], half_t)], 1
        )
        # the 8 corners of the ink box (B, 3, 8), mapped by the linear part
        pick = torch.tensor([[(n >> a) & 1 for n in range(8)] for a in range(3)], dtype=torch.bool)
        corners = torch.where(pick, hi_xyz[:, :, None], lo_xyz[:, :, None])
        mapped = lin @ corners
        half = self.canvas / 2.0
        lo = -half - mapped.amin(dim=2)
        hi = half - mapped.amax(dim=2)
        return torch.where(hi >= lo, lo + params["position"] * (hi - lo), (lo + hi) / 2.0)

    def matrices(self, x: Tensor, params: dict[str, Tensor]) -> Tensor:
        """``(B, 3, 4)`` float64 maps from output voxel indices ``(j, i, k, 1)`` to the slab's
        normalised ``grid_sample`` coordinates (``align_corners=False``)."""
        lin = self.linear(params)
        inv = torch.linalg.inv(lin)
        shift = self.shifts(x, params)
        m = torch.zeros(lin.shape[0], 4, 4, dtype=torch.float64)
        m[:, :3, :3] = inv
        m[:, :3, 3] = -(inv @ shift[:, :, None])[:, :, 0]
        m[:, 3, 3] = 1.0
        out_c = torch.eye(4, dtype=torch.float64)  # voxel indices -> centred
        out_c[:3, 3] = -(self.canvas - 1) / 2.0
        # centred slab coordinates -> [-1, 1] (the slab is 28 x 28 x thickness)
        scale = [2.0 / DIGIT_SIZE, 2.0 / DIGIT_SIZE, 2.0 / self.thickness, 1.0]
        src_n = torch.diag(torch.tensor(scale, dtype=torch.float64))
        return (src_n @ m @ out_c)[:, :3]

    def apply(self, x: Tensor, params: dict[str, Tensor]) -> Tensor:
        full = self.matrices(x, params).to(device=x.device, dtype=torch.float32)  # (B, 3, 4)
        n = self.canvas
        idx = torch.arange(n, dtype=torch.float32, device=x.device)
        jj, ii, kk = idx[None, None, :], idx[None, :, None], idx[:, None, None]
        f = full[:, :, :, None, None, None]  # (B, 3, 4, 1, 1, 1)
        # element-wise per sample (no batched matmul): chunking independence
        pts = f[:, :, 0] * jj + (f[:, :, 1] * ii + (f[:, :, 2] * kk + f[:, :, 3]))
        grid = pts.permute(0, 2, 3, 4, 1)  # (B, D, H, W, 3): (x, y, z)
        slab = x.float().unsqueeze(2).expand(-1, -1, self.thickness, -1, -1).contiguous()
        out = F.grid_sample(slab, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return out.clamp_(0.0, 1.0)  # trilinear weights can overshoot 1 by float32 rounding


def orthogonal_projections(volume: Tensor) -> Tensor:
    """Maximum-intensity projections of ``(B, C, D, H, W)`` volumes side by side, as images
    ``(B, C, max(H, D), 2 W + D)`` (a cube: ``(B, C, H, 3 W)``), same dtype and range:

    ``[front: max over D -> (H, W) | side: max over W -> (H, D), columns along D |
    top: max over H -> (D, W), rows along D]``; a shorter panel is padded with zeros below.
    """
    if not isinstance(volume, Tensor) or volume.dim() != 5:
        got = tuple(volume.shape) if isinstance(volume, Tensor) else type(volume).__name__
        raise ValueError(f"orthogonal_projections expects volumes (B, C, D, H, W), got {got}")
    front = volume.amax(dim=2)  # (B, C, H, W)
    side = volume.amax(dim=4).transpose(2, 3)  # (B, C, H, D)
    top = volume.amax(dim=3)  # (B, C, D, W)
    rows = max(front.shape[2], top.shape[2])
    panels = [F.pad(p, (0, 0, 0, rows - p.shape[2])) for p in (front, side, top)]
    return torch.cat(panels, dim=3)


__all__ = ["Volumetric", "orthogonal_projections"]
