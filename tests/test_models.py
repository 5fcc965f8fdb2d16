"""stnlab.models: shapes, parameter matching, ST placement, plain-value construction."""

from __future__ import annotations

import pytest
import torch

from stnlab.models import CNN, FCN, STCNN, STFCN
from stnlab.spatial import SpatialTransformer, localisation_parameters


def _n(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("cls", [CNN, FCN, STCNN, STFCN])
@pytest.mark.parametrize("size", [28, 42, 60])
def test_forward_shapes(cls, size):
    m = cls(in_channels=1, in_size=[size, size], num_classes=10)
    x = torch.rand(3, 1, size, size)
    assert m(x).shape == (3, 10)
    n_st = len(m.spatial_transformers())
    assert n_st == (1 if cls in (STCNN, STFCN) else 0)
    assert m.num_parameters() == _n(m)


@pytest.mark.parametrize("transform", ["affine", "projective", "tps"])
def test_st_cnn_parameter_count_matches_cnn(transform):
    cnn = CNN(in_channels=1, in_size=(42, 42), num_classes=10)
    st = STCNN(in_channels=1, in_size=(42, 42), num_classes=10, transform=transform,
               st_out_size=(28, 28))
    assert abs(_n(st) - _n(cnn)) / _n(cnn) < 0.10, (_n(st), _n(cnn))


def test_defaults_and_recorded_counts():
    assert _n(CNN(1, (42, 42), 10)) == 167050
    assert _n(STCNN(1, (42, 42), 10)) == 136136  # 42 -> ST -> avg-pool 2 -> 21x21 CNN
    assert _n(STCNN(1, (42, 42), 10, st_out_size=28, st_pool=1)) == 151496
    assert _n(FCN(1, (42, 42), 10)) == 117770
    assert _n(STFCN(1, (42, 42), 10)) == 90832
    fcn, stfcn = FCN(1, (42, 42), 10), STFCN(1, (42, 42), 10, st_out_size=28, st_pool=1)
    assert abs(_n(stfcn) - _n(fcn)) / _n(fcn) < 0.10


def test_fresh_st_cnn_equals_cnn_with_same_weights():
    torch.manual_seed(0)
    cnn = CNN(1, (42, 42), 10)
    st = STCNN(1, (42, 42), 10, st_pool=1)  # 42 -> 42: the ST starts as the identity
    torch.nn.Sequential(*st.features[1:]).load_state_dict(cnn.features.state_dict())
    st.classifier.load_state_dict(cnn.classifier.state_dict())
    x = torch.rand(4, 1, 42, 42)
    torch.testing.assert_close(st(x), cnn(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cls", [CNN, FCN, STCNN, STFCN])
def test_batch_norm_option(cls):
    """``batch_norm=True`` adds one norm a conv (CNNs) or hidden layer (FCNs), 2 weights a
    channel, and nothing to the localisation net: a fresh ST still starts at the identity."""
    plain, normed = cls(2, (42, 42), 19), cls(2, (42, 42), 19, batch_norm=True)
    norms = [m for m in normed.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    widths = (32, 64) if cls in (CNN, STCNN) else (64, 64)
    assert [m.num_features for m in norms] == list(widths)
    assert _n(normed) - _n(plain) == 2 * sum(widths)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                   for st in normed.spatial_transformers() for m in st.modules())
    x = torch.rand(4, 2, 42, 42)
    normed.train()
    assert normed(x).shape == (4, 19)
    for st in normed.spatial_transformers():
        assert st.diagnostics()["det_mean"] == pytest.approx(1.0)
        assert st.diagnostics()["params_std"] == 0.0


def test_parallel_and_series_transformers():
    torch.manual_seed(1)
    x = torch.rand(2, 1, 42, 42)
    par = STCNN(1, [42, 42], 10, st_at=["input"], num_parallel=2)
    assert len(par.spatial_transformers()) == 2
    assert par.features[0](x).shape == (2, 2, 42, 42)  # concatenated on channels
    assert par(x).shape == (2, 10)
    ser = STCNN(1, [42, 42], 10, st_at=["input", "conv1"], transform="similarity")
    sts = ser.spatial_transformers()
    assert [s.in_size for s in sts] == [(42, 42), (10, 10)]  # 42 -> pool 2 -> conv1 -> 10
    assert [s.in_channels for s in sts] == [1, 32]
    assert ser(x).shape == (2, 10)
    deep = STCNN(3, [32, 32], 5, st_at=["conv1", "conv2"], num_parallel=2, transform="tps")
    assert len(deep.spatial_transformers()) == 4
    assert deep(torch.rand(2, 3, 32, 32)).shape == (2, 5)
    stf = STFCN(2, [42, 42], 19, num_parallel=2)
    assert stf(torch.rand(2, 2, 42, 42)).shape == (2, 19)
    assert stf.st(torch.rand(2, 2, 42, 42)).shape == (2, 4, 42, 42)


def test_split_channels_gives_each_transformer_its_channel():
    torch.manual_seed(0)
    x = torch.rand(3, 2, 42, 42)
    for model in (STCNN(2, 42, 19, num_parallel=2, split_channels=True),
                  STFCN(2, 42, 19, num_parallel=2, split_channels=True)):
        par = model.spatial_transformers()
        assert [st.in_channels for st in par] == [1, 1]
        assert model(x).shape == (3, 19)
    st = STCNN(2, 42, 19, num_parallel=2, split_channels=True).features[0]
    assert st.out_channels == 2
    with torch.no_grad():  # move transformer 1 only: channel 0 stays the identity's
        st.transformers[1].loc.head.bias.copy_(torch.tensor([0.5, 0, 0.3, 0, 0.5, 0.]))
    out = st(x)
    assert torch.allclose(out[:, :1], x[:, :1], atol=1e-5)
    assert not torch.allclose(out[:, 1:], x[:, 1:], atol=1e-2)
    assert torch.allclose(out[:, 1:], st.transformers[1](x[:, 1:]))
    with pytest.raises(ValueError, match="3 input channels do not split into 2"):
        STCNN(3, 42, 10, num_parallel=2, split_channels=True)


def test_st_pool_halves_st_output():
    m = STCNN(1, [42, 42], 10, st_out_size=[42, 42], st_pool=2)
    assert [type(x) for x in m.features[:2]] == [type(x) for x in STCNN(1, 42, 10).features[:2]]
    assert not any(isinstance(x, torch.nn.AvgPool2d) for x in STCNN(1, 28, 10).features)
    with pytest.raises(ValueError, match="st_pool"):
        STCNN(1, 42, 10, st_pool=0)
    assert m.features[:2](torch.rand(2, 1, 42, 42)).shape == (2, 1, 21, 21)
    assert m(torch.rand(2, 1, 42, 42)).shape == (2, 10)


def test_bad_positions():
    with pytest.raises(ValueError, match="input, conv1, conv2"):
        STCNN(1, [42, 42], 10, st_at=["conv3"])
    with pytest.raises(ValueError, match="input"):
        STFCN(1, [42, 42], 10, st_at=["fc1"])


def test_localisation_parameters_of_models():
    m = STCNN(1, [42, 42], 10, st_at=["input", "conv1"], num_parallel=2)
    loc = {id(p) for p in localisation_parameters(m)}
    expected = {id(p) for st in m.spatial_transformers() for p in st.loc.parameters()}
    assert loc == expected and len(loc) == 4 * 8  # 4 STs x (2 conv + 2 linear) x (w, b)
    assert all(isinstance(s, SpatialTransformer) for s in m.spatial_transformers())
    assert list(localisation_parameters(CNN(1, [42, 42], 10))) == []


def test_one_training_step_moves_the_localisation_net():
    torch.manual_seed(2)
    m = STCNN(1, [42, 42], 10)
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    x, y = torch.rand(8, 1, 42, 42), torch.randint(0, 10, (8,))
    before = m.spatial_transformers()[0].loc.head.weight.detach().clone()
    torch.nn.functional.cross_entropy(m(x), y).backward()
    opt.step()
    assert not torch.equal(before, m.spatial_transformers()[0].loc.head.weight)


def test_channels_last_gives_the_same_results():
    torch.manual_seed(3)
    a = STCNN(1, [42, 42], 10, st_out_size=[42, 42], st_pool=1, channels_last=True)
    b = STCNN(1, [42, 42], 10, st_out_size=[42, 42], st_pool=1, channels_last=False)
    b.load_state_dict(a.state_dict())
    x = torch.rand(4, 1, 42, 42)
    torch.testing.assert_close(a(x), b(x), atol=1e-5, rtol=1e-4)
    assert a.features[1][0].weight.is_contiguous(memory_format=torch.channels_last)


def test_built_from_yaml_like_config():
    hydra_utils = pytest.importorskip("hydra.utils")
    omegaconf = pytest.importorskip("omegaconf")
    cfg = omegaconf.OmegaConf.create(
        """
        _target_: stnlab.models.STCNN
        in_channels: 1
        in_size: [42, 42]
        num_classes: 10
        transform: tps
        st_out_size: [28, 28]
        st_at: [input, conv1]
        num_parallel: 2
        bound: true
        grid_size: 3
        loc_kwargs: {channels: [8, 8], hidden: 16}
        """
    )
    m = hydra_utils.instantiate(cfg)
    assert isinstance(m, STCNN)
    sts = m.spatial_transformers()
    assert len(sts) == 4 and sts[0].transform.num_params == 18 and sts[0].transform.bound
    assert m(torch.rand(2, 1, 42, 42)).shape == (2, 10)
    f = hydra_utils.instantiate({"_target_": "stnlab.models.STFCN", "in_channels": 1,
                                 "in_size": [28, 28], "num_classes": 10, "st_out_size": None})
    assert f(torch.rand(2, 1, 28, 28)).shape == (2, 10)
