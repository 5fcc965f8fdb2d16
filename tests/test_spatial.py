"""stnlab.spatial: conventions, exactness, known warps, gradients, errors."""

from __future__ import annotations

import math

import pytest
import torch

from stnlab.spatial import (
    ALIGN_CORNERS,
    SAMPLERS,
    TRANSFORMS,
    ConvLocalisation,
    FCLocalisation,
    SpatialTransformer,
    Transform,
    localisation_parameters,
    make_transform,
    sample,
)

# every family with an identity warp; ``crop`` (scale below a ceiling) has its own tests
FAMILIES = [f for f in TRANSFORMS if f != "crop"]


def _ident(t: Transform, b: int = 2, dtype=torch.float32) -> torch.Tensor:
    return t.identity().to(dtype).unsqueeze(0).repeat(b, 1)


def test_public_constants():
    assert ALIGN_CORNERS is False
    assert set(SAMPLERS) == {"bilinear", "nearest", "bicubic"}
    assert set(TRANSFORMS) - set(FAMILIES) == {"crop"}
    assert set(FAMILIES) == {"translation", "attention", "similarity", "affine", "projective",
                             "tps"}
    expected = {"translation": 2, "attention": 3, "similarity": 4, "affine": 6,
                "projective": 8, "tps": 32}
    for name, n in expected.items():
        t = make_transform(name)
        assert t.num_params == n
        assert t.identity().shape == (n,)
    assert make_transform("tps", grid_size=3).num_params == 18


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("mode", SAMPLERS)
def test_identity_exact_same_size(family, mode):
    torch.manual_seed(0)
    t = make_transform(family)
    u = torch.rand(2, 3, 42, 42)
    grid = t.grid(_ident(t), (42, 42))
    assert grid.shape == (2, 42, 42, 2)
    assert grid.abs().max() < 1  # pixel centres lie strictly inside [-1, 1]
    v = sample(u, grid, mode=mode)
    assert v.shape == u.shape
    torch.testing.assert_close(v, u, atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("mode", SAMPLERS)
def test_identity_exact_smaller_output(family, mode):
    # align_corners=False: output pixel j of a 14-wide grid over a 42-wide image sits on input
    # pixel 3 j + 1 exactly, so every sampler returns the strided sub-image.
    torch.manual_seed(1)
    t = make_transform(family)
    u = torch.rand(2, 1, 42, 42)
    v = sample(u, t.grid(_ident(t), (14, 14)), mode=mode)
    torch.testing.assert_close(v, u[..., 1::3, 1::3], atol=1e-5, rtol=0)


@pytest.mark.parametrize("padding", ["zeros", "border"])
def test_identity_padding_modes(padding):
    u = torch.rand(1, 2, 10, 12)
    t = make_transform("affine")
    torch.testing.assert_close(sample(u, t.grid(_ident(t, 1), (10, 12)), padding=padding), u,
                               atol=1e-5, rtol=0)


def test_rotation_90_matches_rot90():
    torch.manual_seed(2)
    u = torch.rand(2, 3, 16, 16)
    t = make_transform("affine")
    theta = torch.tensor([[0.0, -1.0, 0.0, 1.0, 0.0, 0.0]]).repeat(2, 1)
    for mode in SAMPLERS:
        v = sample(u, t.grid(theta, (16, 16)), mode=mode)
        torch.testing.assert_close(v, torch.rot90(u, 1, dims=(2, 3)), atol=1e-5, rtol=0)
    # the similarity family with angle pi/2 is the same warp
    s = make_transform("similarity")
    v = sample(u, s.grid(torch.tensor([[1.0, math.pi / 2, 0.0, 0.0]]).repeat(2, 1), (16, 16)))
    torch.testing.assert_close(v, torch.rot90(u, 1, dims=(2, 3)), atol=1e-5, rtol=0)


def test_translation_by_one_pixel():
    torch.manual_seed(3)
    u = torch.rand(1, 1, 8, 10)
    t = make_transform("translation")
    # tx = 2 / W: output column j samples input column j + 1; the last column reads zeros.
    v = sample(u, t.grid(torch.tensor([[2.0 / 10, 0.0]]), (8, 10)))
    expected = torch.zeros_like(u)
    expected[..., :-1] = u[..., 1:]
    torch.testing.assert_close(v, expected, atol=1e-5, rtol=0)
    # ty = -2 / H with border padding: row i samples row i - 1, the top row repeats.
    v = sample(u, t.grid(torch.tensor([[0.0, -2.0 / 8]]), (8, 10)), padding="border")
    expected = torch.cat([u[..., :1, :], u[..., :-1, :]], 2)
    torch.testing.assert_close(v, expected, atol=1e-5, rtol=0)


def _pixel_from_norm(h: int, w: int) -> torch.Tensor:
    """N: pixel coordinates (centres at integers) -> normalised (align_corners=False)."""
    return torch.tensor([[2.0 / w, 0.0, 1.0 / w - 1.0], [0.0, 2.0 / h, 1.0 / h - 1.0],
                         [0.0, 0.0, 1.0]], dtype=torch.float64)


def test_homography_matches_kornia():
    kgt = pytest.importorskip("kornia.geometry.transform")
    torch.manual_seed(4)
    h_in, w_in, h_out, w_out = 20, 24, 18, 22
    u = torch.rand(2, 2, h_in, w_in, dtype=torch.float64)
    params = torch.tensor([[0.9, 0.1, 0.05, -0.08, 1.1, -0.1, 0.15, -0.1],
                           [1.05, -0.2, -0.1, 0.12, 0.8, 0.06, -0.1, 0.2]], dtype=torch.float64)
    t = make_transform("projective")
    v = sample(u, t.grid(params, (h_out, w_out)))
    # Same warp in pixel coordinates: out pixel -> in pixel = N_in^-1 H N_out; kornia's
    # warp_perspective(M) samples src at M^-1 p with align_corners=True pixel coordinates.
    hn = t.matrix(params)
    pix = torch.linalg.inv(_pixel_from_norm(h_in, w_in)) @ hn @ _pixel_from_norm(h_out, w_out)
    ref = kgt.warp_perspective(u, torch.linalg.inv(pix), (h_out, w_out), mode="bilinear",
                               padding_mode="zeros", align_corners=True)
    torch.testing.assert_close(v, ref, atol=1e-6, rtol=0)
    assert v.abs().sum() > 0


def test_linear_grids_use_torch_convention():
    torch.manual_seed(12)
    t = make_transform("affine")
    p = _ident(t, 3) + 0.3 * torch.randn(3, 6)
    ref = torch.nn.functional.affine_grid(p.view(3, 2, 3), [3, 1, 9, 11],
                                          align_corners=ALIGN_CORNERS)
    torch.testing.assert_close(t.grid(p, (9, 11)), ref, atol=1e-6, rtol=0)


def test_affine_points_agree_with_grid():
    torch.manual_seed(5)
    for family in ["translation", "attention", "similarity", "affine"]:
        t = make_transform(family)
        p = _ident(t, 3) + 0.2 * torch.randn(3, t.num_params)
        g = t.grid(p, (5, 7))
        from stnlab.spatial import base_grid

        pts = t.points(p, base_grid((5, 7)).reshape(-1, 2))
        torch.testing.assert_close(g.reshape(3, -1, 2), pts, atol=1e-6, rtol=0)


@pytest.mark.parametrize("k", [3, 4])
def test_tps_maps_control_points_exactly(k):
    torch.manual_seed(6)
    t = make_transform("tps", grid_size=k)
    c = t.control_points  # (K*K, 2) float64
    targets = (c.reshape(1, -1) + 0.3 * torch.randn(2, 2 * k * k, dtype=torch.float64))
    mapped = t.points(targets, c)
    torch.testing.assert_close(mapped, targets.view(2, -1, 2), atol=1e-10, rtol=0)
    # and the grid of a K x K output whose pixel centres are not the control points still
    # reproduces an affine target exactly (TPS contains the affine maps)
    a = torch.tensor([[1.1, 0.2, 0.1], [-0.1, 0.9, -0.05]], dtype=torch.float64)
    aff_targets = (c @ a[:, :2].T + a[:, 2]).reshape(1, -1)
    g = t.grid(aff_targets, (6, 5))
    ref = make_transform("affine").grid(a.reshape(1, 6), (6, 5))
    torch.testing.assert_close(g, ref, atol=1e-10, rtol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_gradcheck_grid(family):
    torch.manual_seed(7)
    t = make_transform(family, grid_size=3) if family == "tps" else make_transform(family)
    p = (_ident(t, 2, torch.float64) + 0.1 * torch.randn(2, t.num_params, dtype=torch.float64))
    p.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda q: t.grid(q, (3, 4)), (p,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("family", ["affine", "tps"])
def test_gradcheck_grid_bounded(family):
    torch.manual_seed(8)
    kw = {"grid_size": 3} if family == "tps" else {}
    t = make_transform(family, bound=True, **kw)
    p = (_ident(t, 2, torch.float64) + 0.5 * torch.randn(2, t.num_params, dtype=torch.float64))
    p.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda q: t.grid(q, (3, 4)), (p,), eps=1e-6, atol=1e-5)


def test_gradcheck_bilinear_sampler_image_and_grid():
    torch.manual_seed(9)
    u = torch.rand(2, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    grid = (2.4 * torch.rand(2, 4, 3, 2, dtype=torch.float64) - 1.2).requires_grad_(True)
    for padding in ["zeros", "border"]:
        assert torch.autograd.gradcheck(
            lambda a, g, pad=padding: sample(a, g, "bilinear", pad), (u, grid), eps=1e-6,
            atol=1e-5,
        )


def test_bounding_keeps_identity_and_limits():
    for family in FAMILIES:
        t = make_transform(family, bound=True, bound_scale=0.5)
        ident = _ident(t, 1)
        torch.testing.assert_close(t.constrain(ident), ident)
        huge = ident + 100.0 * torch.randn(1, t.num_params)
        assert ((t.constrain(huge) - ident).abs() <= 0.5 + 1e-6).all()
        # unbounded is the default and leaves the parameters alone
        assert torch.equal(make_transform(family).constrain(huge), huge)


def test_crop_family_keeps_its_range_and_starts_on_the_centred_crop():
    t = make_transform("crop", min_scale=0.2, max_scale=0.38)
    huge = 100.0 * torch.randn(64, 3)
    p = t.constrain(huge)
    assert ((p[:, 0] >= 0.2) & (p[:, 0] <= 0.38)).all() and (p[:, 1:].abs() <= 1).all()
    # the initial crop is attention's centred zoom by 0.3, and samples the same pixels
    start = t.initial(0.3).unsqueeze(0)
    att = make_transform("attention")
    torch.testing.assert_close(t.grid(start, (20, 20)),
                               att.grid(torch.tensor([[0.3, 0.0, 0.0]]), (20, 20)))
    torch.testing.assert_close(t.jacobian_det(start), torch.tensor([0.09]))
    p64 = (start.double() + 0.3 * torch.randn(2, 3, dtype=torch.float64)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda q: t.grid(q, (3, 4)), (p64,), eps=1e-6, atol=1e-5)
    st = SpatialTransformer(1, (60, 60), transform="crop", out_size=20, init_scale=0.3,
                            transform_kwargs={"min_scale": 0.2, "max_scale": 0.38})
    u = torch.rand(2, 1, 60, 60)
    torch.testing.assert_close(st(u), sample(u, att.grid(torch.tensor([[0.3, 0, 0]] * 2), 20)))


@pytest.mark.parametrize(("kwargs", "init", "match"), [
    ({"bound": True}, None, "bounded by its min_scale and max_scale"),
    ({"min_scale": 0.5, "max_scale": 0.4}, None, "0 < min_scale < max_scale"),
    ({"min_scale": 0.2, "max_scale": 0.38}, 0.5, "strictly between"),
])
def test_crop_family_bad_arguments(kwargs, init, match):
    with pytest.raises(ValueError, match=match):
        make_transform("crop", **kwargs).initial(init if init is not None else 0.3)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("loc", ["conv", "fc"])
def test_fresh_transformer_returns_input(family, loc):
    torch.manual_seed(10)
    st = SpatialTransformer(in_channels=2, in_size=(42, 42), transform=family, loc=loc)
    u = torch.rand(3, 2, 42, 42)
    torch.testing.assert_close(st(u), u, atol=1e-5, rtol=0)
    assert st.last_params.shape == (3, st.transform.num_params)
    assert not st.last_params.requires_grad
    torch.testing.assert_close(st.last_params, _ident(st.transform, 3))
    # 42 -> 14 is exact too
    st14 = SpatialTransformer(2, (42, 42), transform=family, out_size=[14, 14], loc=loc)
    torch.testing.assert_close(st14(u), u[..., 1::3, 1::3], atol=1e-5, rtol=0)


def test_identity_init_of_localisation_heads():
    for loc_cls in (ConvLocalisation, FCLocalisation):
        t = make_transform("affine")
        net = loc_cls(1, (28, 28), t.num_params, t.identity())
        assert torch.count_nonzero(net.head.weight) == 0
        assert torch.equal(net.head.bias.detach(), t.identity())


def test_conv_localisation_is_the_papers():
    net = ConvLocalisation(1, (42, 42), 6, downsample=2)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    linears = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert [(c.out_channels, c.kernel_size) for c in convs] == [(20, (5, 5)), (20, (5, 5))]
    assert [lin.out_features for lin in linears] == [20, 6]
    assert any(isinstance(m, torch.nn.AvgPool2d) for m in net.modules())
    assert any(isinstance(m, torch.nn.MaxPool2d) for m in net.modules())
    assert net(torch.rand(2, 1, 42, 42)).shape == (2, 6)
    # configurable, and small maps still work ('same' padding fallback)
    net = ConvLocalisation(8, (6, 6), 8, channels=[10, 12, 14], kernel_size=3, hidden=16)
    assert net(torch.rand(2, 8, 6, 6)).shape == (2, 8)
    fc = FCLocalisation(1, (42, 42), 6)
    assert [m.out_features for m in fc.modules() if isinstance(m, torch.nn.Linear)] == [32, 32, 6]


def test_gradients_reach_localisation_head():
    torch.manual_seed(11)
    st = SpatialTransformer(1, (28, 28), "affine")
    u = torch.rand(4, 1, 28, 28)
    (st(u) * torch.randn(4, 1, 28, 28)).sum().backward()
    assert st.loc.head.weight.grad is not None
    assert st.loc.head.weight.grad.abs().sum() > 0


def test_diagnostics():
    st = SpatialTransformer(1, (20, 20), "attention", loc="fc")
    assert st.diagnostics() == {}
    st(torch.rand(2, 1, 20, 20))
    d = st.diagnostics()
    assert d["out_of_bounds"] == 0.0 and d["det_mean"] == pytest.approx(1.0)
    assert all(isinstance(v, float) for v in d.values())
    with torch.no_grad():
        st.loc.head.bias.copy_(torch.tensor([2.0, 0.0, 0.0]))  # zoom out 2x
    st(torch.rand(2, 1, 20, 20))
    d = st.diagnostics()
    assert d["det_mean"] == pytest.approx(4.0)
    assert d["out_of_bounds"] == pytest.approx(0.75)  # the outer ring of a 2x zoom-out
    tps = SpatialTransformer(1, (20, 20), "tps", loc="fc")
    tps(torch.rand(2, 1, 20, 20))
    assert set(tps.diagnostics()) >= {"out_of_bounds"}


def test_clear_errors():
    with pytest.raises(ValueError, match="affine.*projective.*tps"):
        make_transform("rigid")
    with pytest.raises(ValueError, match="bilinear.*nearest.*bicubic"):
        sample(torch.rand(1, 1, 4, 4), torch.zeros(1, 4, 4, 2), mode="lanczos")
    with pytest.raises(ValueError, match="zeros.*border"):
        sample(torch.rand(1, 1, 4, 4), torch.zeros(1, 4, 4, 2), padding="reflect")
    with pytest.raises(ValueError, match=r"\(B, 6\)"):
        make_transform("affine").grid(torch.zeros(2, 5), (4, 4))
    with pytest.raises(ValueError, match=r"\(B, 32\)"):
        make_transform("tps").grid(torch.zeros(2, 18), (4, 4))
    with pytest.raises(ValueError, match="bilinear"):
        SpatialTransformer(1, (28, 28), sampling="cubic")
    with pytest.raises(ValueError, match="conv.*fc"):
        SpatialTransformer(1, (28, 28), loc="rnn")
    with pytest.raises(ValueError, match="28, 28"):
        SpatialTransformer(1, (28, 28))(torch.rand(1, 1, 42, 42))


def test_localisation_parameters_finds_exactly_loc_params():
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.st1 = SpatialTransformer(1, (28, 28), "affine")
            self.conv = torch.nn.Conv2d(1, 4, 3)
            self.st2 = SpatialTransformer(4, (26, 26), "tps", loc="fc")

    net = Net()
    loc = list(localisation_parameters(net))
    expected = list(net.st1.loc.parameters()) + list(net.st2.loc.parameters())
    assert len(loc) == len(expected) and {id(p) for p in loc} == {id(p) for p in expected}
    assert {id(p) for p in net.conv.parameters()}.isdisjoint(id(p) for p in loc)
    assert list(localisation_parameters(torch.nn.Linear(2, 2))) == []


def test_conv_localisation_with_batch_norm_keeps_identity_init():
    """``norm=True`` (cluttered MNIST): batch norm after every conv and the hidden FC layer, so
    no ReLU layer can go dead on a whole batch; a fresh transformer still returns its input."""
    torch.manual_seed(12)
    st = SpatialTransformer(1, (60, 60), "affine", loc_kwargs={"norm": True})
    norms = [m for m in st.loc.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert [type(m).__name__ for m in norms] == ["BatchNorm2d", "BatchNorm2d", "BatchNorm1d"]
    u = torch.rand(4, 1, 60, 60)
    torch.testing.assert_close(st(u), u, atol=1e-5, rtol=0)
    st.eval()
    torch.testing.assert_close(st(u[:1]), u[:1], atol=1e-5, rtol=0)


def test_fc_localisation_hands_a_channels_last_maps_gradient_back_channels_last():
    """ST-CNN Multi's localisation nets read a channels-last feature map through an average
    pool and a flatten: the same outputs and input gradients as from its NCHW copy, and the
    gradient that reaches the pool's output in the map's own layout (with ``nn.Flatten`` it is
    NCHW, and the pool's backward converts the map-sized gradient)."""
    torch.manual_seed(0)
    net = FCLocalisation(8, (16, 16), 6, downsample=4).double()
    torch.nn.init.normal_(net.head.weight)  # identity init: a zero head passes no gradient
    pooled_grads = []

    def catch_grad(module, args, out):
        out.register_hook(pooled_grads.append)

    net.body[0].register_forward_hook(catch_grad)
    x = torch.randn(3, 8, 16, 16, dtype=torch.float64)
    outs, grads = {}, {}
    for name, fmt in (("plain", torch.contiguous_format), ("last", torch.channels_last)):
        leaf = x.clone(memory_format=fmt).requires_grad_()
        outs[name] = net(leaf)
        outs[name].square().sum().backward()
        grads[name] = leaf.grad
    assert torch.equal(outs["last"], outs["plain"])
    assert pooled_grads[1].is_contiguous(memory_format=torch.channels_last)
    assert grads["plain"].abs().sum() > 0
    torch.testing.assert_close(grads["last"], grads["plain"], rtol=1e-12, atol=1e-12)


def _path(path: str, monkeypatch) -> None:
    """``numba``: the kernels of ``stnlab.spatial._cpu`` (skipped where numba, the ``stnlab[cpu]``
    extra, is not installed); ``grid_sample``: the path without numba, forced by
    ``STNLAB_NUMBA=0`` where it is installed."""
    from stnlab.spatial import _cpu

    if path == "numba":
        pytest.importorskip("numba")
        monkeypatch.delenv(_cpu.ENV_SWITCH, raising=False)
        assert _cpu.available()
    else:
        monkeypatch.setenv(_cpu.ENV_SWITCH, "0")
        assert not _cpu.available()


@pytest.mark.parametrize("path", ["numba", "grid_sample"])
def test_sampling_a_channels_last_map_stays_channels_last_with_grid_samples_values(
    path, monkeypatch
):
    """A conv feature map in channels-last (the CNNs' CPU layout), by the numba kernels or
    without them: the values and both gradients of ``grid_sample`` on its NCHW copy (float64:
    to rounding; gradcheck), a NaN coordinate still NaN, and the output (numba) and the
    gradient that reaches the layer before in the map's own layout (no conversion in the
    convolutions around it)."""
    _path(path, monkeypatch)
    torch.manual_seed(0)
    x = torch.randn(3, 8, 10, 12, dtype=torch.float64)
    grid = torch.rand(3, 7, 9, 2, dtype=torch.float64) * 2.4 - 1.2  # some of it outside
    weight = torch.randn(3, 8, 7, 9, dtype=torch.float64)
    outs, grads = {}, {}
    for name, fmt in (("plain", torch.contiguous_format), ("last", torch.channels_last)):
        leaf = x.contiguous(memory_format=fmt).requires_grad_()
        u = leaf * 2  # a non-leaf, as a conv's output: its gradient is what sample() hands back
        u.register_hook(lambda g, name=name: grads.__setitem__(name, g))
        g = grid.clone().requires_grad_()
        outs[name] = sample(u, g)
        (outs[name] * weight).sum().backward()
        grads[name + " grid"] = g.grad
    assert outs["last"].is_contiguous(memory_format=torch.channels_last) == (path == "numba")
    assert grads["last"].is_contiguous(memory_format=torch.channels_last)
    for key in ("", " grid"):
        torch.testing.assert_close(grads["last" + key], grads["plain" + key], rtol=1e-12,
                                   atol=1e-12)
    torch.testing.assert_close(outs["last"], outs["plain"], rtol=1e-12, atol=1e-12)
    small = torch.randn(2, 3, 5, 6, dtype=torch.float64).contiguous(
        memory_format=torch.channels_last).requires_grad_()
    coords = (torch.rand(2, 4, 4, 2, dtype=torch.float64) * 2.4 - 1.2).requires_grad_()
    assert torch.autograd.gradcheck(sample, (small, coords))
    coords = coords.detach().clone()
    coords[0, 0, 0, 0] = float("nan")
    out = sample(small, coords)
    assert out[0, :, 0, 0].isnan().all() and not out[0, :, 1:].isnan().any()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_numba_kernels_give_grid_samples_values_and_gradients(dtype):
    """The numba kernels and the path without them (``grid_sample``): the same output, map
    gradient and grid gradient (float64 to 1e-12, float32 to 1e-5), with neighbours outside
    the map, a planar grid of another size (as the linear families make it) and an NCHW
    gradient coming in; the map's gradient channels-last, the grid's in the grid's layout;
    gradcheck in float64; a NaN coordinate gives NaN in that pixel only."""
    pytest.importorskip("numba")
    from stnlab.spatial._cpu import sample_rows

    torch.manual_seed(1)
    x = torch.randn(2, 5, 9, 7, dtype=dtype)
    # planar, as the linear families make it: a (B, 2, H', W') tensor seen as (B, H', W', 2)
    grid = (torch.rand(2, 2, 6, 8, dtype=dtype) * 2.6 - 1.3).permute(0, 2, 3, 1)
    g_out = torch.randn(2, 5, 6, 8, dtype=dtype)  # NCHW: the kernel takes any layout
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    results = {}
    for name in ("grid_sample", "numba"):
        u = x.contiguous(memory_format=torch.channels_last).requires_grad_()
        g = grid.clone().requires_grad_()
        if name == "grid_sample":
            out = torch.nn.functional.grid_sample(u.contiguous(), g, align_corners=False)
        else:
            out = sample_rows(u, g)
            assert out.is_contiguous(memory_format=torch.channels_last)
        out.backward(g_out)
        results[name] = (out, u.grad, g.grad)
    assert results["numba"][2].abs().sum() > 0
    for got, want in zip(results["numba"], results["grid_sample"], strict=True):
        torch.testing.assert_close(got, want, **tol)
    assert results["numba"][1].is_contiguous(memory_format=torch.channels_last)
    assert results["numba"][2].stride() == grid.stride()  # the grid's gradient in its layout
    if dtype == torch.float64:
        u = x[:, :3, :5, :4].contiguous(memory_format=torch.channels_last).requires_grad_()
        coords = (grid[:, :3, :4] * 1.1).requires_grad_()
        assert torch.autograd.gradcheck(sample_rows, (u, coords))
    coords = grid.clone()
    coords[1, 2, 3, 1] = float("nan")
    out = sample_rows(x.contiguous(memory_format=torch.channels_last), coords)
    assert out[1, :, 2, 3].isnan().all() and out.isnan().sum() == x.shape[1]


def test_without_numba_or_switched_off_sample_takes_grid_sample(monkeypatch):
    """``STNLAB_NUMBA=0`` (or no numba) sends ``sample()`` to ``grid_sample``: float64 to
    rounding the values it gives with the kernels; half precision and empty batches never
    reach the kernels; asking the kernels directly without numba says what to install."""
    from stnlab.spatial import _cpu

    torch.manual_seed(2)
    u = torch.randn(2, 4, 6, 6, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    grid = torch.rand(2, 5, 5, 2, dtype=torch.float64) * 2 - 1
    auto = sample(u, grid)
    assert not _cpu.can_sample(u.bfloat16(), grid.bfloat16())
    assert not _cpu.can_sample(u[:0], grid[:0])
    monkeypatch.setenv(_cpu.ENV_SWITCH, "0")
    assert not _cpu.can_sample(u, grid)
    off = sample(u, grid)
    assert off.is_contiguous()  # grid_sample's NCHW output
    torch.testing.assert_close(off, auto, rtol=1e-12, atol=1e-12)
    half = sample(u.bfloat16(), grid.bfloat16())
    torch.testing.assert_close(half.float(), auto.float(), rtol=0.05, atol=0.1)
    if _cpu._import() is None:
        with pytest.raises(RuntimeError, match=r"pip install 'stnlab\[cpu\]'"):
            _cpu.sample_rows(u, grid)

