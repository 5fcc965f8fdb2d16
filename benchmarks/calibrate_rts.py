"""Plain-PyTorch calibration of RTS on the embedded sample: no Lightning, no Hydra.

A reference for the framework's figures (docs/results.md): the same digits, RTS recipe and
models as ``stnlab-train``, trained by a bare loop, so a gap between the two points at the
framework's defaults rather than at the model.

    python benchmarks/calibrate_rts.py --model st_cnn            # the framework's defaults
    python benchmarks/calibrate_rts.py --optimizer sgd --lr 0.05 --loc-lr-mult 0.1 --smooth 0
    python benchmarks/calibrate_rts.py --distortion cluttered --epochs 10 --loc-norm
    python benchmarks/calibrate_rts.py --distortion cluttered --split framework --epochs 15 \
        --transform attention --loc-norm --st-out 30 --st-pool 1 \
        --log benchmarks/results/calibrate_cluttered.jsonl
    python benchmarks/calibrate_rts.py --distortion cluttered --split framework --epochs 45 \
        --transform crop --crop-range 0.2 0.38 --init-scale 0.3 --loc-norm --st-out 20 --st-pool 1

The defaults mirror ``stnlab-train``'s (Adam, one-cycle peaking at 3e-3, localisation nets at
the full rate, label smoothing 0.1, ST at the canvas's resolution then a 2x average pool);
``--distortion cluttered`` runs the same loop on another recipe. The figures each option
gave are in docs/results.md.

``--split framework`` uses the framework's split of the sample (``split_seed`` 0: 1,000 test,
500 validation, 3,500 training digits), reports the validation error every epoch and the test
error once, at the end. On ``cluttered`` it also reports where the input transformer looks on
the validation set: ``st/iou`` (mean IoU of its sampled region with the digit's ink box),
``st/area`` (the share of the canvas it samples) and ``det/scale`` (mean sqrt |det|).
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F

from stnlab.data.distortions import make_distortion
from stnlab.data.mnist import load_sample
from stnlab.models import CNN, FCN, STCNN, STFCN
from stnlab.spatial import (
    localisation_parameters,
    pixel_box_to_normalised,
    region_area_fraction,
    region_box_iou,
    sampled_region,
)

INK = 0.1


def ink_boxes(digit: torch.Tensor) -> torch.Tensor:
    """Inclusive pixel ink boxes ``(B, 4)`` ``(x0, y0, x1, y1)`` of ``(B, 1, H, W)`` images."""
    ink = digit[:, 0] > INK
    h, w = ink.shape[-2:]

    def first_last(m: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.arange(n)
        return torch.where(m, idx, n).amin(1), torch.where(m, idx, -1).amax(1)

    y0, y1 = first_last(ink.any(2), h)
    x0, x1 = first_last(ink.any(1), w)
    return torch.stack([x0, y0, x1, y1], 1)


def make_set(dist, x: torch.Tensor, gen: torch.Generator):
    """Distorted images and, for cluttered, the digits' normalised ink boxes (else None)."""
    if not hasattr(dist, "layout"):
        return dist(x, gen), None
    x = dist.check_input(x)
    params = dist.sample_params(x.shape[0], gen)
    images = dist.apply(x, params)
    boxes = pixel_box_to_normalised(ink_boxes(dist.layout(x, params)["digit"]), dist.out_size)
    return images, boxes


@torch.no_grad()
def evaluate(net, x, y, boxes=None, chunk: int = 500) -> dict[str, float]:
    """Error %, and with boxes the input transformer's crop IoU / area / scale."""
    wrong, ious, areas, scales = 0, [], [], []
    for i in range(0, len(y), chunk):
        wrong += int((net(x[i:i + chunk]).argmax(1) != y[i:i + chunk]).sum())
        sts = net.spatial_transformers() if hasattr(net, "spatial_transformers") else []
        if boxes is not None and sts:
            st = sts[0]
            poly = sampled_region(st.transform, st.last_params)
            ious.append(region_box_iou(poly, boxes[i:i + chunk]))
            areas.append(region_area_fraction(poly))
            det = st.transform.jacobian_det(st.last_params)
            if det is not None:
                scales.append(det.abs().sqrt())
    out = {"error": 100 * wrong / len(y)}
    if ious:
        out["st/iou"] = float(torch.cat(ious).mean())
        out["st/area"] = float(torch.cat(areas).mean())
    if scales:
        out["det/scale"] = float(torch.cat(scales).mean())
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--distortion", default="RTS", help="any stnlab recipe, e.g. cluttered")
    p.add_argument("--model", choices=["cnn", "st_cnn", "fcn", "st_fcn"], default="st_cnn")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--optimizer", choices=["adam", "sgd"], default="adam")
    p.add_argument("--lr", type=float, default=3e-3, help="peak lr with --schedule onecycle")
    p.add_argument("--loc-lr-mult", type=float, default=1.0)
    p.add_argument("--schedule", choices=["none", "onecycle", "cosine"], default="onecycle")
    p.add_argument("--st-out", type=int, default=None, help="ST output side (default: 42)")
    p.add_argument("--st-pool", type=int, default=None,
                   help="average pool after the ST (default: the model's rule, 2 at 42 px)")
    p.add_argument("--loc-down", type=int, default=None,
                   help="loc net input downsampling (default: the model's, 2 for conv)")
    p.add_argument("--transform", default="affine")
    p.add_argument("--bound", action="store_true", help="tanh-bounded transform parameters")
    p.add_argument("--crop-range", type=float, nargs=2, default=(0.2, 0.38),
                   metavar=("MIN", "MAX"), help="--transform crop: its scale range")
    p.add_argument("--init-scale", type=float, default=1.0,
                   help="the loc net starts at the zoom p -> s p (st_init_scale)")
    p.add_argument("--loc", choices=["conv", "fc"], default=None,
                   help="localisation net (default: the model's, conv for st_cnn, fc for st_fcn)")
    p.add_argument("--fc-loc-hidden", type=int, nargs="+", default=None,
                   help="st_fcn: FC localisation widths (default: the model's, 32 32)")
    p.add_argument("--fixed", action="store_true", help="distort the training digits once")
    p.add_argument("--loc-hidden", type=int, default=20, help="loc net FC width")
    p.add_argument("--loc-norm", action="store_true", help="batch norm in the loc net")
    p.add_argument("--loc-channels", type=int, nargs="+", default=[20, 20])
    p.add_argument("--dropout", type=float, default=0.0, help="before the linear classifier")
    p.add_argument("--wd", type=float, default=0.0, help="decoupled weight decay (AdamW)")
    p.add_argument("--smooth", type=float, default=0.1, help="label smoothing (training loss)")
    p.add_argument("--train", type=int, default=4000, help="with --split seed")
    p.add_argument("--split", choices=["seed", "framework"], default="seed",
                   help="seed: train/test drawn from the seed; framework: 3500/500/1000")
    p.add_argument("--log", default=None, help="append the final JSON line to this file")
    p.add_argument("--tag", default="", help="a label for the log")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)

    digits = load_sample()
    rts = make_distortion(a.distortion)
    size = tuple(rts.out_size)
    if a.split == "framework":  # the datamodule's: split_seed 0, test | val | train
        perm = torch.randperm(len(digits.labels), generator=torch.Generator().manual_seed(0))
        x = digits.images[perm].float().div(255).unsqueeze(1)
        y = digits.labels[perm]
        x_te, y_te, x_va, y_va = x[:1000], y[:1000], x[1000:1500], y[1000:1500]
        x_tr, y_tr = x[1500:], y[1500:]
        a.train = len(y_tr)
        egen = torch.Generator().manual_seed(1234)  # the same fixed sets for every seed
        x_va, b_va = make_set(rts, x_va, egen)
        x_te, b_te = make_set(rts, x_te, egen)
        gen = torch.Generator().manual_seed(1000 + a.seed)
    else:
        perm = torch.randperm(len(digits.labels), generator=torch.Generator().manual_seed(a.seed))
        x = digits.images[perm].float().div(255).unsqueeze(1)
        y = digits.labels[perm]
        x_tr, y_tr, x_te, y_te = x[: a.train], y[: a.train], x[a.train :], y[a.train :]
        gen = torch.Generator().manual_seed(1000 + a.seed)
        x_te, b_te = make_set(rts, x_te, gen)
        x_va = None
    fixed = rts(x_tr, gen) if a.fixed else None

    st_kw = dict(st_out_size=a.st_out, st_pool=a.st_pool, loc_downsample=a.loc_down,
                 transform=a.transform, bound=a.bound, st_init_scale=a.init_scale)
    if a.transform == "crop":
        st_kw["transform_kwargs"] = {"min_scale": a.crop_range[0], "max_scale": a.crop_range[1]}
    if a.model == "st_cnn":
        lkw = {"hidden": a.loc_hidden, "channels": a.loc_channels, "norm": a.loc_norm}
        net = STCNN(1, size, 10, loc=a.loc or "conv", loc_kwargs=lkw, **st_kw)
    elif a.model == "st_fcn":
        if a.loc == "conv":
            lkw = {"hidden": a.loc_hidden, "channels": a.loc_channels, "norm": a.loc_norm}
        else:
            lkw = {} if a.fc_loc_hidden is None else {"hidden": a.fc_loc_hidden}
        net = STFCN(1, size, 10, loc=a.loc or "fc", loc_kwargs=lkw, **st_kw)
    else:
        net = CNN(1, size, 10) if a.model == "cnn" else FCN(1, size, 10)
    if a.dropout:
        net.classifier.insert(1, torch.nn.Dropout(a.dropout))
    loc = list(localisation_parameters(net))
    ids = {id(q) for q in loc}
    groups = [{"params": [q for q in net.parameters() if id(q) not in ids]}]
    if loc:
        groups.append({"params": loc, "lr": a.lr * a.loc_lr_mult})
    opt = (torch.optim.AdamW(groups, lr=a.lr, weight_decay=a.wd) if a.optimizer == "adam"
           else torch.optim.SGD(groups, lr=a.lr, momentum=0.9))
    steps = a.epochs * (a.train // a.batch)
    sched = None
    if a.schedule == "onecycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=[g["lr"] for g in opt.param_groups], total_steps=steps, pct_start=0.2)
    elif a.schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)

    t0 = time.perf_counter()
    for epoch in range(a.epochs):
        net.train()
        order = torch.randperm(a.train)
        for i in range(a.train // a.batch):
            idx = order[i * a.batch : (i + 1) * a.batch]
            xb = fixed[idx] if fixed is not None else rts(x_tr[idx], gen)
            loss = F.cross_entropy(net(xb), y_tr[idx], label_smoothing=a.smooth)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
        net.eval()
        if x_va is not None:
            ev = evaluate(net, x_va, y_va, b_va)
            name = "val"
        else:
            ev = evaluate(net, x_te, y_te, b_te)
            name = "test"
        diag = "".join(f" {k} {v:.3g}" for st in net.spatial_transformers()
                       for k, v in st.diagnostics().items())
        extra = "".join(f" {k} {v:.3g}" for k, v in ev.items() if k != "error")
        print(f"epoch {epoch + 1:3d} loss {loss.item():.3f} {name} error {ev['error']:.2f}%"
              f"{extra}{diag}", flush=True)
    wall = round(time.perf_counter() - t0, 1)
    res = {**vars(a), "wall_s": wall,
           "num_params": sum(q.numel() for q in net.parameters())}
    if x_va is not None:
        res.update({"val_error_pct": round(ev["error"], 2),
                    **{k: round(v, 4) for k, v in ev.items() if k != "error"}})
        ev = evaluate(net, x_te, y_te, b_te)
    res["test_error_pct"] = round(ev["error"], 2)
    if x_va is None:
        res.update({k: round(v, 4) for k, v in ev.items() if k != "error"})
    line = json.dumps(res)
    print(line)
    if a.log:
        from pathlib import Path

        Path(a.log).parent.mkdir(parents=True, exist_ok=True)
        with open(a.log, "a") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
