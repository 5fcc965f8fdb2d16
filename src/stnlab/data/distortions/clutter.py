"""``cluttered`` (alias ``T``): the digit at a random place on a large canvas among patches
cut from other digits."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import (
    Distortion,
    check_canvas,
    check_generator,
    check_integer,
    check_number,
    uniform,
)
from .warp import DIGIT_SIZE, INK_THRESHOLD, ink_box


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
        self.canvas = check_canvas(self.name, canvas)
        self.num_clutter = check_integer(self.name, "num_clutter", num_clutter, minimum=0)
        self.clutter_size = check_integer(self.name, "clutter_size", clutter_size, minimum=1)
        if self.clutter_size > DIGIT_SIZE:
            raise ValueError(
                f"{self.name}: clutter_size={clutter_size!r} is larger than the "
                f"{DIGIT_SIZE}x{DIGIT_SIZE} digit it is cut from; use clutter_size <= {DIGIT_SIZE}"
            )
        self.max_digit_cover = check_number(
            self.name, "max_digit_cover", max_digit_cover, minimum=0.0
        )
        if self.max_digit_cover >= 1.0:
            raise ValueError(
                f"{self.name}: max_digit_cover={max_digit_cover!r} must be < 1 (the clutter "
                "must never cover the whole digit); use e.g. max_digit_cover=0.5"
            )
        self.max_tries = check_integer(self.name, "max_tries", max_tries, minimum=1)
        self.out_size = (self.canvas, self.canvas)

    def sample_params(self, batch_size: int, generator: torch.Generator) -> dict[str, Tensor]:
        n, t = self.num_clutter, self.max_tries
        u = uniform(batch_size, 2 + n * (3 + 2 * t), generator)
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
        box = ink_box(x)  # (B, 4) on the CPU: y0, y1, x0, x1
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

    def with_boxes(self, x: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor | None]:
        """The cluttered canvases and the box of the digit alone (clutter ink excluded)."""
        x = self.check_input(x)
        params = self.sample_params(x.shape[0], check_generator(generator))
        if x.shape[0] == 0:
            return x.new_zeros(0, 1, *self.out_size), torch.zeros(0, 4, dtype=torch.long)
        parts = self.layout(x, params, with_footprint=False)
        return torch.maximum(parts["digit"], parts["clutter"]), ink_box(parts["digit"])[
            :, [2, 0, 3, 1]
        ]
