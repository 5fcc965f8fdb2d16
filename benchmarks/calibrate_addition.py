"""Bare-loop calibration of MNIST addition on the framework's own DataModule (validation only).

No Lightning, no Hydra: the addition data of ``stnlab-train experiment=addition_study``
(the sample's split, the same RTS pairs), one of Table 1's models, Adam and a plain
cross-entropy loop, the fixed validation set evaluated every ``--every`` steps. It chose the
study's batch norm and localisation rate (docs/results.md, "MNIST addition"):

    python benchmarks/calibrate_addition.py --model cnn --steps 3000                 # chance
    python benchmarks/calibrate_addition.py --model cnn --batch-norm --steps 3000
    python benchmarks/calibrate_addition.py --model st_cnn --num-parallel 2 --batch-norm \
        --loc-lr-mult 0.1 --log benchmarks/results/calibrate_addition.jsonl

Every evaluation also reports which digit each input transformer follows (``_framing``:
``track[k][c]``, the correlation of transformer k's region centre with channel c's digit
centre); ``--init-spread`` starts parallel transformers apart (``spread_init`` below)
and ``--gallery`` draws the transformers on 8 validation pairs at the end (docs/notes/addition.md,
2026-12-06).

The test set is never touched.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F
from torch import nn

from stnlab.data import DistortedMNIST
from stnlab.data.distortions.warp import ink_box
from stnlab.models import CNN, FCN, STCNN, STFCN
from stnlab.spatial import (
    ParallelSpatialTransformers,
    localisation_parameters,
    spatial_transformers,
)

MODELS = {"cnn": CNN, "fcn": FCN, "st_cnn": STCNN, "st_fcn": STFCN}

SPREADS = ("none", "channel", "offset", "own")


def spread_init(net: nn.Module, spread: str = "none") -> None:
    """Start ``net``'s parallel input transformers from different points (with identical
    starts the paper's 2xST learns one warp twice; docs/notes/addition.md, 2026-12-06).

    ``channel``: transformer k's localisation net starts reading only the k-th of ``num``
    groups of input channels (its first layer's weights on the others zeroed; training may
    grow them): every transformer still sees every channel. ``offset``: transformer k starts
    translated to the k-th of ``num`` evenly spaced horizontal offsets in [-0.5, 0.5] (affine).
    ``own``: ``channel``, and the first layer after them starts on each one's own channels.
    ``none`` (the paper's): all start at the same warp. A study tool, not a recipe: none of
    them made the paper's 2xST better on validation."""
    if spread not in SPREADS:
        raise SystemExit(f"--init-spread {spread!r}; valid: {', '.join(SPREADS)}")
    st = next((m for m in net.modules() if isinstance(m, ParallelSpatialTransformers)), None)
    num = 0 if st is None else len(st.transformers)
    if spread == "none" or num < 2:
        return
    if spread in ("channel", "own") and st.split_channels:
        raise SystemExit("--init-spread channel|own with --split-channels: each transformer "
                         "already reads only its channels; use one of the two")
    with torch.no_grad():
        for k, t in enumerate(st.transformers):
            if spread == "offset":
                t.loc.head.bias[2] = -0.5 + k / (num - 1)
                continue
            first = next(m for m in t.loc.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
            w = first.weight.view(first.weight.shape[0], t.in_channels, -1)
            keep = w[:, k * t.in_channels // num : (k + 1) * t.in_channels // num].clone()
            w.zero_()
            w[:, k * t.in_channels // num : (k + 1) * t.in_channels // num] = keep
        if spread == "own":  # the first conv/linear after the transformers
            mods = list(net.modules())
            after = mods[mods.index(st) + len(list(st.modules())):]
            layer = next(m for m in after if isinstance(m, (nn.Conv2d, nn.Linear)))
            group = st.transformers[0].in_channels // num
            w = layer.weight.view(layer.weight.shape[0], num, num * group, -1)
            for k in range(num):
                w[:, k, : k * group] = 0
                w[:, k, (k + 1) * group :] = 0



def _val_error(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    net.eval()
    with torch.no_grad():
        pred = torch.cat([net(x[i : i + 250]).argmax(1) for i in range(0, len(y), 250)])
    net.train()
    return float((pred != y).float().mean()) * 100


def _digit_centres(x: torch.Tensor) -> torch.Tensor:
    """Each channel's digit centre in normalised coordinates: ``(B, C, 2)`` as (x, y)."""
    b, c, h, w = x.shape
    box = ink_box(x.reshape(b * c, 1, h, w)).float()  # (y0, y1, x0, x1)
    cx = (box[:, 2] + box[:, 3]) / 2 / (w - 1) * 2 - 1
    cy = (box[:, 0] + box[:, 1]) / 2 / (h - 1) * 2 - 1
    return torch.stack([cx, cy], 1).view(b, c, 2)


def _corr(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm() + 1e-12))


def _framing(net: torch.nn.Module, x: torch.Tensor) -> dict:
    """Which digit each input transformer frames, on the validation images: ``track[k][c]``
    is the correlation (mean over x and y) of transformer k's region centre with channel c's
    digit centre; ``theta_gap`` the mean |theta_0 - theta_1| (0: the same warp); ``det`` each
    one's mean determinant (the area scale of its region)."""
    sts = [st for st in spatial_transformers(net) if st.in_size == tuple(x.shape[2:])]
    if not sts:
        return {}
    net.eval()
    with torch.no_grad():
        thetas = []
        for k, st in enumerate(sts):  # a channel each: transformer k reads the k-th group
            g = st.in_channels
            xs = x if g == x.shape[1] else x[:, k * g : (k + 1) * g]
            thetas.append(torch.cat([st.loc(xs[i : i + 250]) for i in range(0, len(x), 250)]))
    net.train()
    cen = _digit_centres(x)  # (B, C, 2)
    out: dict = {"track": []}
    for th in thetas:
        reg = th.view(-1, 2, 3)[:, :, 2]  # the region's centre, (B, 2)
        out["track"].append([round((_corr(reg[:, 0], cen[:, c, 0])
                                    + _corr(reg[:, 1], cen[:, c, 1])) / 2, 3)
                             for c in range(x.shape[1])])
    if len(thetas) > 1:
        out["theta_gap"] = round(float((thetas[0] - thetas[1]).abs().mean()), 4)
    out["det"] = [round(float(torch.linalg.det(t.view(-1, 2, 3)[:, :, :2]).mean()), 3)
                  for t in thetas]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=sorted(MODELS), default="cnn")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--schedule", choices=["constant", "onecycle"], default="constant")
    p.add_argument("--smooth", type=float, default=0.0, help="label smoothing")
    p.add_argument("--batch-norm", action="store_true")
    p.add_argument("--num-parallel", type=int, default=1, help="transformers (ST models)")
    p.add_argument("--loc-lr-mult", type=float, default=1.0)
    p.add_argument("--split-channels", action="store_true", help="a channel each (ST models)")
    p.add_argument("--init-spread", default="none",
                   help="how the parallel transformers start (spread_init)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--every", type=int, default=500)
    p.add_argument("--data-dir", default="data")
    p.add_argument("--gallery", default=None, help="save the transformers' gallery (PNG) here")
    p.add_argument("--log", default=None, help="append the result as one JSON line here")
    a = p.parse_args()

    torch.manual_seed(a.seed)
    dm = DistortedMNIST(distortion="addition", batch_size=a.batch_size, seed=a.seed,
                        data_dir=a.data_dir)
    dm.setup("fit")
    xv, yv = dm.val_set.tensors[:2]
    kw = {"batch_norm": a.batch_norm}
    if a.model.startswith("st"):
        kw.update(num_parallel=a.num_parallel, split_channels=a.split_channels)
    net = MODELS[a.model](xv.shape[1], tuple(xv.shape[2:]), 19, **kw)
    spread_init(net, a.init_spread)
    loc = {id(q) for q in localisation_parameters(net)}
    groups = [{"params": [q for q in net.parameters() if id(q) not in loc]}]
    if loc:
        groups.append({"params": [q for q in net.parameters() if id(q) in loc],
                       "lr": a.lr * a.loc_lr_mult})
    opt = torch.optim.Adam(groups, lr=a.lr)
    sched = None
    if a.schedule == "onecycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=[g["lr"] for g in opt.param_groups], total_steps=a.steps, pct_start=0.2
        )
    step, epoch, hist, t0 = 0, 0, [], time.perf_counter()
    framing = [(0, _framing(net, xv))]
    while step < a.steps:
        for batch in dm.train_dataloader():
            x, y = dm.distort_train_batch(batch, epoch)
            loss = F.cross_entropy(net(x), y, label_smoothing=a.smooth)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            step += 1
            if step % a.every == 0 or step == a.steps:
                hist.append((step, round(_val_error(net, xv, yv), 1)))
                framing.append((step, _framing(net, xv)))
                print(f"step {step}  loss {loss.item():.3f}  val error {hist[-1][1]:.1f}%  "
                      f"{framing[-1][1]}  {time.perf_counter() - t0:.0f} s", flush=True)
            if step >= a.steps:
                break
        epoch += 1
    record = {**vars(a), "params": sum(q.numel() for q in net.parameters()),
              "val_error_by_step": hist, "framing_by_step": framing,
              "wall_s": round(time.perf_counter() - t0)}
    print(json.dumps(record))
    if a.gallery:  # the first 8 validation images, as the study's STGallery draws them
        from stnlab.callbacks import STGallery

        figure = STGallery().render(net, xv[:8])
        if figure is not None:
            figure.savefig(a.gallery, dpi=80)
    if a.log:
        with open(a.log, "a") as f:
            f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
