"""Where a spatial transformer looks: the sampled region, its area and its IoU with a box.

Conventions (those of :mod:`stnlab.spatial.transforms`)
------------------------------------------------------
* Points are ``(x, y)`` in normalised coordinates; the *input* image covers exactly
  ``[-1, 1]^2`` (``align_corners=False``: ``-1`` and ``1`` are the outer pixel edges).
* The *output* image covers ``[-1, 1]^2`` of its own frame: its outline runs through the
  corners ``(+-1, +-1)``, not through the corner pixels' centres.
* A transform maps output points to the input points they sample, so the sampled region is
  the image of the output frame's outline under ``transform.points``.
* Boxes are ``(B, 4)`` rows ``(x0, y0, x1, y1)`` with ``x0 <= x1``, ``y0 <= y1``.

Pure PyTorch: no Lightning, no Hydra.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .transform_base import Transform, _size2
from .transforms import TPS

CANVAS_AREA = 4.0
"""Area of the input image ``[-1, 1]^2`` in normalised coordinates."""


def _outline(transform: Transform, points_per_side: int, device, dtype) -> torch.Tensor:
    """The output frame's outline ``(K, 2)``: its 4 corners, or for TPS (a curved image)
    ``points_per_side`` points along every side; in order around the frame."""
    n = 1 if not isinstance(transform, TPS) else max(int(points_per_side), 1)
    t = torch.linspace(-1.0, 1.0, n + 1, device=device, dtype=dtype)[:-1]  # each side's start
    one = torch.ones_like(t)
    sides = [
        torch.stack([t, -one], 1),  # top: left -> right
        torch.stack([one, t], 1),  # right: top -> bottom
        torch.stack([-t, one], 1),  # bottom: right -> left
        torch.stack([-one, -t], 1),  # left: bottom -> top
    ]
    return torch.cat(sides, 0)


def sampled_region(
    transform: Transform, params: torch.Tensor, points_per_side: int = 8
) -> torch.Tensor:
    """The polygon ``(B, K, 2)`` of the input that ``transform`` with ``params`` samples.

    ``params`` are the raw ``(B, P)`` parameters, as fed to ``transform.grid`` (e.g. a
    ``SpatialTransformer``'s ``last_params``); the family's bounding is applied. Linear
    families and the projective one map lines to lines: ``K = 4`` (the mapped corners
    ``(-1, -1), (1, -1), (1, 1), (-1, 1)``). TPS: ``K = 4 * points_per_side`` points along
    the border (an approximation of its curved image).
    """
    params = transform.check(params)
    outline = _outline(transform, points_per_side, params.device, params.dtype)
    return transform.points(params, outline)


def polygon_area(poly: torch.Tensor, signed: bool = False) -> torch.Tensor:
    """Shoelace area ``(B,)`` of polygons ``(B, K, 2)`` (or ``(K, 2)`` -> scalar).

    Unsigned by default; ``signed=True`` is positive for the vertex order
    ``(-1, -1) -> (1, -1) -> (1, 1)`` (the identity's outline). A self-intersecting polygon
    gets its shoelace value, not the area it covers.
    """
    x, y = poly[..., 0], poly[..., 1]
    xn, yn = x.roll(-1, dims=-1), y.roll(-1, dims=-1)
    a = 0.5 * (x * yn - xn * y).sum(-1)
    return a if signed else a.abs()


def _forward_fill(pts: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Replace the invalid vertices of ``(B, M, 2)`` by the previous valid one (leading ones by
    the first valid one): duplicated vertices add nothing to the shoelace sum."""
    m = valid.shape[1]
    idx = torch.arange(m, device=valid.device).expand_as(valid)
    last = torch.where(valid, idx, -1).cummax(1).values
    first = torch.where(valid, idx, m).amin(1, keepdim=True).clamp_max(m - 1)
    src = torch.where(last < 0, first.expand_as(last), last)
    out = pts.gather(1, src.unsqueeze(-1).expand(-1, -1, 2))
    return torch.where(valid.any(1)[:, None, None], out, torch.zeros_like(out))


def _clip_half_plane(
    poly: torch.Tensor, valid: torch.Tensor, axis: int, bound: torch.Tensor, keep_above: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """One Sutherland-Hodgman step: keep ``p[axis] >= bound`` (or ``<=``), batched.

    Every edge ``i -> i+1`` emits two slots: ``p_i`` if inside, the crossing point if the edge
    crosses the line; the others are marked invalid. ``(B, M, 2)`` -> ``(B, 2 M, 2)``."""
    poly = _forward_fill(poly, valid)
    d = poly[..., axis] - bound[:, None]
    if not keep_above:
        d = -d
    nxt, dn = poly.roll(-1, dims=1), d.roll(-1, dims=1)
    inside, inside_n = d >= 0, dn >= 0
    cross = inside != inside_n
    denom = d - dn
    t = torch.where(cross, d / torch.where(cross, denom, torch.ones_like(denom)), 0.0)
    hit = poly + t.unsqueeze(-1) * (nxt - poly)
    if axis == 0:  # exact on the line (no rounding off it)
        hit = torch.stack([bound[:, None].expand_as(t), hit[..., 1]], -1)
    else:
        hit = torch.stack([hit[..., 0], bound[:, None].expand_as(t)], -1)
    out = torch.stack([poly, hit], 2).flatten(1, 2)
    ok = torch.stack([inside, cross], 2).flatten(1, 2)
    return out, ok


def clip_polygon_to_box(poly: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """``(B, K, 2)`` polygons clipped to ``(B, 4)`` boxes ``(x0, y0, x1, y1)``
    (Sutherland-Hodgman, one pass per box edge). Returns ``(B, 16 K, 2)`` vertices, some
    of them repeated (which adds nothing to :func:`polygon_area`); empty intersections are
    all zeros."""
    poly, boxes = _batch(poly, boxes)
    valid = torch.ones(poly.shape[:2], dtype=torch.bool, device=poly.device)
    for axis, col, above in ((0, 0, True), (1, 1, True), (0, 2, False), (1, 3, False)):
        poly, valid = _clip_half_plane(poly, valid, axis, boxes[:, col], above)
    return _forward_fill(poly, valid)


def _batch(poly: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if poly.dim() == 2:
        poly = poly.unsqueeze(0)
    boxes = torch.as_tensor(boxes, dtype=poly.dtype, device=poly.device)
    if boxes.dim() == 1:
        boxes = boxes.unsqueeze(0)
    if poly.dim() != 3 or poly.shape[-1] != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"expected polygons (B, K, 2) and boxes (B, 4), got "
                         f"{tuple(poly.shape)} and {tuple(boxes.shape)}")
    b = max(poly.shape[0], boxes.shape[0])
    return poly.expand(b, -1, -1), boxes.expand(b, -1)


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """Area ``(B,)`` of boxes ``(B, 4)`` ``(x0, y0, x1, y1)`` (0 for an inverted one)."""
    w = (boxes[..., 2] - boxes[..., 0]).clamp_min(0)
    return w * (boxes[..., 3] - boxes[..., 1]).clamp_min(0)


def region_box_iou(poly: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Intersection over union ``(B,)`` of polygons ``(B, K, 2)`` and boxes ``(B, 4)``.

    The polygon counts as a whole, also where it leaves the canvas (the part a transformer
    samples as padding). Either argument may be unbatched (broadcast to the other's batch).
    """
    poly, boxes = _batch(poly, boxes)
    inter = polygon_area(clip_polygon_to_box(poly, boxes))
    union = polygon_area(poly) + box_area(boxes) - inter
    return torch.where(union > 0, inter / union.clamp_min(1e-12), torch.zeros_like(inter))


def region_area_fraction(poly: torch.Tensor) -> torch.Tensor:
    """Share ``(B,)`` of the canvas that the region covers: the area of its intersection
    with the canvas ``[-1, 1]^2`` (clipped, so in ``[0, 1]``), divided by 4."""
    if poly.dim() == 2:
        poly = poly.unsqueeze(0)
    canvas = poly.new_tensor([-1.0, -1.0, 1.0, 1.0])
    return polygon_area(clip_polygon_to_box(poly, canvas)) / CANVAS_AREA


def pixel_box_to_normalised(
    boxes: torch.Tensor, size: int | Sequence[int]
) -> torch.Tensor:
    """Pixel boxes ``(B, 4)`` ``(x0, y0, x1, y1)``, inclusive pixel indices of an
    ``(H, W)`` image, -> normalised ``(x0, y0, x1, y1)`` spanning those pixels' full extent
    (pixel ``j`` covers ``[-1 + 2 j / W, -1 + 2 (j + 1) / W]``)."""
    h, w = _size2(size)
    b = torch.as_tensor(boxes)
    if not b.is_floating_point():
        b = b.to(torch.get_default_dtype())
    return torch.stack([
        -1.0 + 2.0 * b[..., 0] / w,
        -1.0 + 2.0 * b[..., 1] / h,
        -1.0 + 2.0 * (b[..., 2] + 1) / w,
        -1.0 + 2.0 * (b[..., 3] + 1) / h,
    ], -1)


__all__ = [
    "CANVAS_AREA",
    "box_area",
    "clip_polygon_to_box",
    "pixel_box_to_normalised",
    "polygon_area",
    "region_area_fraction",
    "region_box_iou",
    "sampled_region",
]
