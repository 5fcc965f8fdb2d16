"""Two speed levers for ST-CNN Multi, measured without applying them to the models
(docs/performance.md, "Sequence models"): ReLU after the max-pool instead of before it
(identical values), and the sampler's input gradient handed back in channels-last.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/probe_sequence_levers.py [--profile]

Prints that the losses and gradients agree, then the training-step time (min and median of
6 alternating rounds of 2 steps, batch 64) of each variant; ``--profile`` adds the operator
table of 3 steps of Multi with both levers.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from stnlab.models import SequenceCNN, SequenceSTCNNMulti
from stnlab.spatial import SpatialTransformer


def pool_before_relu(model: nn.Module) -> nn.Module:
    """Swap each conv block's ReLU and max-pool: max(relu(x)) == relu(max(x))."""
    for block in model.features:
        if isinstance(block, nn.Sequential):
            mods = list(block)
            i = next(k for k, m in enumerate(mods) if isinstance(m, nn.ReLU))
            j = next(k for k, m in enumerate(mods) if isinstance(m, nn.MaxPool2d))
            mods[i], mods[j] = mods[j], mods[i]
            for k, m in enumerate(mods):
                block._modules[str(k)] = m
    return model


class _GradChannelsLast(torch.autograd.Function):
    """NCHW forward (what CPU ``grid_sample`` reads); the gradient back in channels-last."""

    @staticmethod
    def forward(ctx, x):
        return x.contiguous()

    @staticmethod
    def backward(ctx, grad):
        return grad.contiguous(memory_format=torch.channels_last)


_plain_forward = SpatialTransformer.forward


def _forward_grad_channels_last(self, u):
    if u.dim() == 4 and u.shape[1] > 1 and u.is_contiguous(memory_format=torch.channels_last):
        u = _GradChannelsLast.apply(u)
    return _plain_forward(self, u)


VARIANTS = {  # name: (model, ReLU after pool, channels-last gradient at the sampler)
    "CNN": (SequenceCNN, False, False),
    "CNN, pool first": (SequenceCNN, True, False),
    "Multi": (SequenceSTCNNMulti, False, False),
    "Multi, pool first": (SequenceSTCNNMulti, True, False),
    "Multi, both": (SequenceSTCNNMulti, True, True),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    models = {}
    for name, (cls, pool_first, _) in VARIANTS.items():
        torch.manual_seed(0)
        net = cls(1, 64, 11)
        models[name] = pool_before_relu(net) if pool_first else net
    x = torch.rand(64, 1, 64, 64)
    lengths = torch.randint(0, 6, (64,))

    def step(name: str) -> tuple[float, list[torch.Tensor]]:
        net = models[name]
        SpatialTransformer.forward = (_forward_grad_channels_last if VARIANTS[name][2]
                                      else _plain_forward)
        net.zero_grad(set_to_none=True)
        length, digits = net(x)
        loss = F.cross_entropy(length, lengths) + digits.square().mean()
        loss.backward()
        return loss.item(), [p.grad.clone() for p in net.parameters() if p.grad is not None]

    ref = {name: step(name) for name in VARIANTS}
    for a, b in (("CNN", "CNN, pool first"), ("Multi", "Multi, pool first"),
                 ("Multi", "Multi, both")):
        same = all(torch.allclose(g, h, atol=1e-6) for g, h in zip(ref[a][1], ref[b][1],
                                                                   strict=True))
        print(f"{b}: loss {ref[b][0]:.6f} (against {ref[a][0]:.6f}), gradients agree: {same}")
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(6):
        for name in VARIANTS:
            t0 = time.perf_counter()
            step(name)
            step(name)
            times[name].append((time.perf_counter() - t0) / 2)
    for name, t in times.items():
        print(f"{name:18s} min {min(t) * 1e3:6.1f} ms  median {statistics.median(t) * 1e3:6.1f} ms")
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(3):
                step("Multi, both")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=10))
    SpatialTransformer.forward = _plain_forward


if __name__ == "__main__":
    main()
