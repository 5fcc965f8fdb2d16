"""stnlab.cpu.use_small_input_conv: the first conv layers' input gradient by depthwise
convolutions, opt-in (stnlab-train's ``small_input_conv: true``), the same values and gradients
as the plain convolutions it replaces."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from stnlab.cpu import SmallInputConv2d, SmallInputConv3d, use_small_input_conv
from stnlab.cpu.small_input_conv import _SmallInputConvFn
from stnlab.models import STCNN, STCNN3D, SequenceSTCNNMulti


@pytest.mark.parametrize("in_channels", [1, 2, 3])
def test_small_input_conv_gradient(in_channels):
    torch.manual_seed(4)
    conv = SmallInputConv2d(in_channels, 3, (5, 3), padding=(2, 1)).double()
    x = torch.rand(2, in_channels, 5, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda a, w, b: _SmallInputConvFn.apply(a, w, b, (2, 1)), (x, conv.weight, conv.bias),
        fast_mode=True,
    )
    # float32, the real sizes, a batch that the input gradient sums in two chunks (4 MB of
    # depthwise output each): same gradients as the native convolution
    conv = SmallInputConv2d(in_channels, 16, 9, padding=4)
    x = torch.rand(40, in_channels, 42, 42, requires_grad=True)
    g = torch.randn(40, 16, 42, 42)
    conv(x).backward(g)
    grads = [x.grad.clone(), conv.weight.grad.clone(), conv.bias.grad.clone()]
    x.grad = None
    conv.zero_grad()
    torch.nn.functional.conv2d(x, conv.weight, conv.bias, padding=4).backward(g)
    for mine, ref in zip(grads, [x.grad, conv.weight.grad, conv.bias.grad], strict=True):
        torch.testing.assert_close(mine, ref, atol=1e-3, rtol=1e-4)
    empty = torch.rand(0, in_channels, 42, 42, requires_grad=True)
    conv(empty).sum().backward()
    assert empty.grad.shape == empty.shape


@pytest.mark.parametrize("in_channels,k", [(1, 3), (2, 5), (3, 4)])
def test_small_input_conv3d_matches_conv3d(in_channels, k):
    torch.manual_seed(12)
    fast = SmallInputConv3d(in_channels, 4, k, padding=k // 2).double()
    ref = torch.nn.Conv3d(in_channels, 4, k, padding=k // 2).double()
    ref.load_state_dict(fast.state_dict())
    x = torch.rand(2, in_channels, 6, 7, 5, dtype=torch.float64, requires_grad=True)
    g = torch.randn_like(ref(x))  # same gradients as PyTorch's (gradchecked) conv3d
    a = torch.autograd.grad(fast(x), [x, fast.weight, fast.bias], g)
    b = torch.autograd.grad(ref(x), [x, ref.weight, ref.bias], g)
    for p, q in zip(a, b, strict=True):
        torch.testing.assert_close(p, q, atol=1e-12, rtol=0)


@pytest.mark.parametrize("make,shape,swapped", [
    (lambda: STCNN(1, 42, 10), (3, 1, 42, 42), 2),  # the CNN's first conv, the loc net's
    (lambda: SequenceSTCNNMulti(1, 32, 11), (3, 1, 32, 32), 1),  # FC localisation nets
    (lambda: STCNN3D(1, 16, 10), (2, 1, 16, 16, 16), 2),
])
def test_a_model_after_the_swap_gives_the_same_values_and_gradients(make, shape, swapped):
    """The models are plain PyTorch (no ``SmallInputConv`` in them); the swap turns the few-
    channel convolutions in place, keeps the state dict, and leaves every output and every
    parameter's gradient as it was (float64, to rounding)."""
    torch.manual_seed(5)
    plain = make().double()
    assert not any(isinstance(m, (SmallInputConv2d, SmallInputConv3d))
                   for m in plain.modules())
    fast = make().double()
    fast.load_state_dict(plain.state_dict())
    keys = list(fast.state_dict())
    assert use_small_input_conv(fast) == swapped
    assert list(fast.state_dict()) == keys
    x = torch.rand(*shape, dtype=torch.float64)
    outs = {}
    for name, model in (("plain", plain), ("fast", fast)):
        out = model(x)
        out = torch.cat([o.flatten(1) for o in out], 1) if isinstance(out, tuple) else out
        out.square().sum().backward()
        outs[name] = (out, [p.grad for p in model.parameters()])
    torch.testing.assert_close(outs["fast"][0], outs["plain"][0], rtol=1e-10, atol=1e-10)
    for a, b in zip(outs["fast"][1], outs["plain"][1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


def test_only_plain_stride_one_few_channel_convs_are_swapped():
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1),
                        nn.Conv2d(1, 4, 3, stride=2), nn.Conv2d(2, 4, 3, padding="same"),
                        nn.Conv3d(3, 4, 3), nn.Conv2d(2, 4, 3, groups=2))
    assert use_small_input_conv(net) == 2
    assert [type(m).__name__ for m in net] == [
        "SmallInputConv2d", "Conv2d", "Conv2d", "Conv2d", "SmallInputConv3d", "Conv2d"]
    assert use_small_input_conv(net) == 0  # once is enough


def test_stnlab_train_swaps_only_with_the_switch(make_cfg):
    """``small_input_conv: true`` (conf/train.yaml) swaps the net's first conv; ``false``
    leaves the plain model; a non-boolean is refused naming the key."""
    from stnlab.config.validate import check_config
    from stnlab.errors import StnlabError
    from stnlab.run.train import build_data_and_module

    for on in (True, False):
        cfg = make_cfg("train", ["model=cnn", "debug=fast", f"small_input_conv={on}"])
        _, module = build_data_and_module(cfg)
        assert isinstance(module.net.features[0][0], SmallInputConv2d) is on
    with pytest.raises(StnlabError, match="small_input_conv"):
        check_config(make_cfg("train", ["small_input_conv=sometimes"]))
