"""Several digits in one example: ``addition`` (two RTS digits as two channels) and the
multi-digit sequences of the SVHN-like task."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .base import (
    Distortion,
    check_canvas,
    check_generator,
    check_number,
    check_range,
    lerp,
    uniform,
)
from .linear import RTS
from .warp import (
    DIGIT_SIZE,
    centred_to_normalised,
    grid_from_maps,
    ink_box,
    pixels_to_centred,
    sample_bilinear,
)


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
        self.canvas = check_canvas(owner, canvas)
        self.scale = check_range(owner, "scale", scale, positive=True)
        self.gap = check_range(owner, "gap", gap)
        if self.gap[0] < 0:
            raise ValueError(f"{owner}: gap={gap!r} must be >= 0 (digits would overlap)")
        self.jitter = check_number(owner, "jitter", jitter, minimum=0.0)
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
        u = uniform(batch_size, 3 + 2 * max_len, generator)
        return {
            "scale": lerp(u[:, 0], self.scale),  # before shrinking to fit
            "position": u[:, 1:3],
            "gap": lerp(u[:, 3 : 3 + max_len], self.gap),  # after digit k (the last unused)
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
        box = ink_box(digits.reshape(b * max_len, 1, 28, 28)).view(b, max_len, 4).double()
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
        full = centred_to_normalised((28, 28)) @ m @ pixels_to_centred(self.out_size) @ shift
        src = digits[slot_b.to(digits.device), slot_k.to(digits.device)].unsqueeze(1)
        vals = sample_bilinear(
            src, grid_from_maps(full, (size, size), digits.device, projective=False)
        )
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
        params = self.sample_params(digits.shape[0], digits.shape[1], check_generator(generator))
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
