"""Memory layout between channels-last feature maps (the CNNs' CPU layout) and ops that read
NCHW: keep the gradient in the maps' own layout, so the convolutions' backward converts nothing."""

from __future__ import annotations

import torch


def is_channels_last_map(u: torch.Tensor) -> bool:
    """A 4-D map stored channels-last (and not also NCHW-contiguous, as 1-channel maps are)."""
    return (u.dim() == 4 and not u.is_contiguous()
            and u.is_contiguous(memory_format=torch.channels_last))


class _NCHWWithChannelsLastGrad(torch.autograd.Function):
    """The identity: forward, the NCHW copy that the op after it would make anyway; backward,
    the gradient handed back channels-last."""

    @staticmethod
    def forward(ctx, u: torch.Tensor) -> torch.Tensor:
        return u.contiguous()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad.contiguous(memory_format=torch.channels_last)


def nchw_keeping_grad_layout(u: torch.Tensor) -> torch.Tensor:
    """``u`` in NCHW for an op that reads NCHW (CPU ``grid_sample``, a flatten), its gradient
    still channels-last where ``u`` is a channels-last map that needs one; else ``u``."""
    if u.requires_grad and is_channels_last_map(u):
        return _NCHWWithChannelsLastGrad.apply(u)
    return u


__all__ = ["is_channels_last_map", "nchw_keeping_grad_layout"]
