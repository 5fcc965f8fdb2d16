"""The sampled region of a transform, its area and its IoU with a box; the init_scale option."""

import math

import pytest
import torch

from stnlab.models import STCNN, STFCN
from stnlab.spatial import (
    SpatialTransformer,
    make_transform,
    pixel_box_to_normalised,
    polygon_area,
    region_area_fraction,
    region_box_iou,
    sampled_region,
)


def test_identity_region_is_the_canvas():
    for name in ("translation", "attention", "similarity", "affine", "projective"):
        t = make_transform(name)
        poly = sampled_region(t, t.identity().unsqueeze(0))
        assert poly.shape == (1, 4, 2)
        expected = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])
        torch.testing.assert_close(poly[0], expected)
        assert float(polygon_area(poly)) == pytest.approx(4.0)
        assert float(region_area_fraction(poly)) == pytest.approx(1.0)


def test_identity_iou_is_box_share_of_canvas():
    t = make_transform("attention")
    poly = sampled_region(t, t.identity().repeat(2, 1))
    boxes = torch.tensor([[-0.5, -0.5, 0.5, 0.5], [0.0, -1.0, 1.0, 0.2]])
    iou = region_box_iou(poly, boxes)
    torch.testing.assert_close(iou, torch.tensor([1.0 / 4.0, 1.2 / 4.0]))


def test_attention_crop_equal_to_box_gives_one_and_disjoint_zero():
    t = make_transform("attention")
    # the crop of half the side centred at (0.3, -0.2): [-0.2, 0.8] x [-0.7, 0.3]
    params = torch.tensor([[0.5, 0.3, -0.2], [0.2, -0.7, -0.7]])
    poly = sampled_region(t, params)
    boxes = torch.tensor([[-0.2, -0.7, 0.8, 0.3], [0.5, 0.5, 0.9, 0.9]])
    iou = region_box_iou(poly, boxes)
    assert float(iou[0]) == pytest.approx(1.0, abs=1e-6)
    assert float(iou[1]) == pytest.approx(0.0, abs=1e-7)
    # partial overlap: crop [-0.2, 0.8] x [-0.7, 0.3] against [0.3, 1.3] x [-0.7, 0.3]
    half = region_box_iou(poly[:1], torch.tensor([[0.3, -0.7, 1.3, 0.3]]))
    assert float(half) == pytest.approx(0.5 / 1.5, abs=1e-6)


def test_rotated_diamond_against_box_analytic():
    t = make_transform("affine")
    a = math.pi / 4
    params = torch.tensor([[math.cos(a), -math.sin(a), 0.0, math.sin(a), math.cos(a), 0.0]])
    poly = sampled_region(t, params)
    # the square [-1, 1]^2 turned 45 degrees: a diamond of vertices at distance sqrt 2
    assert float(polygon_area(poly)) == pytest.approx(4.0, abs=1e-5)
    r = math.sqrt(2.0)
    assert float(poly.norm(dim=-1).max()) == pytest.approx(r, abs=1e-6)
    # against the canvas: the octagon = canvas minus 4 corner triangles of legs 2 - sqrt 2
    leg = 2.0 - r
    inter = 4.0 - 4 * 0.5 * leg * leg
    canvas = torch.tensor([[-1.0, -1.0, 1.0, 1.0]])
    assert float(region_box_iou(poly, canvas)) == pytest.approx(inter / (8.0 - inter), abs=1e-5)
    assert float(region_area_fraction(poly)) == pytest.approx(inter / 4.0, abs=1e-5)
    # a box in the diamond's right corner: [1, sqrt 2] x [-0.5, 0.5] holds the triangle tip
    box = torch.tensor([[1.0, -0.5, 2.0, 0.5]])
    h = r - 1.0  # the part of the diamond right of x = 1: a triangle of base 2 h, height h
    tip = h * h
    expected = tip / (4.0 + 1.0 - tip)
    assert float(region_box_iou(poly, box)) == pytest.approx(expected, abs=1e-5)


def test_tps_identity_is_the_canvas_and_bent_border_counts():
    t = make_transform("tps", grid_size=3)
    poly = sampled_region(t, t.identity().unsqueeze(0), points_per_side=8)
    assert poly.shape == (1, 32, 2)
    assert float(polygon_area(poly)) == pytest.approx(4.0, abs=1e-4)
    canvas = torch.tensor([[-1.0, -1.0, 1.0, 1.0]])
    assert float(region_box_iou(poly, canvas)) == pytest.approx(1.0, abs=1e-4)
    # a TPS that zooms by 0.5 (every target halved) samples a quarter of the canvas
    half = sampled_region(t, 0.5 * t.identity().unsqueeze(0))
    assert float(region_area_fraction(half)) == pytest.approx(0.25, abs=1e-4)


def test_pixel_box_to_normalised_and_unbatched_inputs():
    boxes = torch.tensor([[0, 0, 59, 59], [15, 30, 44, 59]])
    out = pixel_box_to_normalised(boxes, (60, 60))
    torch.testing.assert_close(out, torch.tensor([[-1.0, -1.0, 1.0, 1.0], [-0.5, 0.0, 0.5, 1.0]]))
    w = pixel_box_to_normalised(torch.tensor([0, 0, 0, 0]), (10, 20))
    torch.testing.assert_close(w, torch.tensor([-1.0, -1.0, -0.9, -0.8]))
    t = make_transform("attention")
    poly = sampled_region(t, t.identity())  # (P,) -> (1, 4, 2)
    quarter = region_box_iou(poly[0], torch.tensor([-1.0, -1.0, 0.0, 0.0]))
    assert float(quarter) == pytest.approx(0.25)


def test_region_follows_bounding():
    t = make_transform("attention", bound=True, bound_scale=0.5)
    raw = torch.tensor([[10.0, 0.0, 0.0]])  # squashed to scale 1.5
    assert float(polygon_area(sampled_region(t, raw))) == pytest.approx(9.0, abs=1e-4)


# -- init_scale ------------------------------------------------------------------------------
def test_initial_scale_one_is_exactly_identity():
    for name in ("translation", "attention", "similarity", "affine", "projective", "tps"):
        t = make_transform(name)
        assert torch.equal(t.initial(1.0), t.identity())
        tb = make_transform(name, bound=True)
        assert torch.equal(tb.initial(), tb.identity())


@pytest.mark.parametrize("name", ["attention", "similarity", "affine", "projective", "tps"])
@pytest.mark.parametrize("bound", [False, True])
def test_initial_scale_zooms_about_the_centre(name, bound):
    t = make_transform(name, bound=bound)
    poly = sampled_region(t, t.initial(0.5).unsqueeze(0))
    assert float(region_area_fraction(poly)) == pytest.approx(0.25, abs=1e-4)
    assert float(region_box_iou(poly, torch.tensor([[-0.5, -0.5, 0.5, 0.5]]))) == pytest.approx(
        1.0, abs=1e-4
    )


def test_initial_scale_errors():
    with pytest.raises(ValueError, match="no scale"):
        make_transform("translation").initial(0.5)
    with pytest.raises(ValueError, match="bound"):
        make_transform("attention", bound=True, bound_scale=0.3).initial(0.5)
    with pytest.raises(ValueError, match="> 0"):
        make_transform("attention").initial(0.0)


def test_spatial_transformer_and_models_forward_init_scale():
    torch.manual_seed(0)
    st = SpatialTransformer(1, (60, 60), transform="attention", out_size=(30, 30), init_scale=0.5)
    torch.testing.assert_close(st.loc.head.bias.detach(), torch.tensor([0.5, 0.0, 0.0]))
    # a fresh one samples the centre crop: its output is the input's centre, resampled
    x = torch.rand(2, 1, 60, 60)
    torch.testing.assert_close(st(x), x[:, :, 15:45, 15:45], atol=1e-5, rtol=0)
    default = SpatialTransformer(1, (60, 60), transform="attention")
    torch.testing.assert_close(default.loc.head.bias.detach(), torch.tensor([1.0, 0.0, 0.0]))
    for cls in (STCNN, STFCN):
        m = cls(1, (60, 60), 10, transform="attention", st_out_size=30, st_pool=1,
                st_init_scale=0.5)
        (s,) = m.spatial_transformers()
        assert float(s.loc.head.bias[0].detach()) == pytest.approx(0.5)
        assert m(torch.rand(2, 1, 60, 60)).shape == (2, 10)
        (d,) = cls(1, (60, 60), 10, transform="attention").spatial_transformers()
        assert float(d.loc.head.bias[0].detach()) == 1.0
