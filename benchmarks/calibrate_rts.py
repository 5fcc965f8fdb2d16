"""Plain-PyTorch calibration of RTS on the embedded sample: no Lightning, no Hydra.

A reference for the framework's figures (docs/results.md): the same digits, RTS recipe and
models as ``stnlab-train``, trained by a bare loop, so a gap between the two points at the
framework's defaults rather than at the model.

    python benchmarks/calibrate_rts.py --model st_cnn            # the framework's defaults
    python benchmarks/calibrate_rts.py --optimizer sgd --lr 0.05 --loc-lr-mult 0.1 --smooth 0
    python benchmarks/calibrate_rts.py --distortion cluttered --epochs 10 --loc-norm

The defaults mirror ``stnlab-train``'s (Adam, one-cycle peaking at 3e-3, localisation nets at
the full rate, label smoothing 0.1, ST at the canvas's resolution then a 2x average pool);
``--distortion cluttered`` runs the same loop on another recipe. The figures each option
gave are in docs/results.md.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F

from stnlab.data.distortions import make_distortion
from stnlab.data.mnist import load_sample
from stnlab.models import CNN, STCNN
from stnlab.spatial import localisation_parameters


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--distortion", default="RTS", help="any stnlab recipe, e.g. cluttered")
    p.add_argument("--model", choices=["cnn", "st_cnn"], default="st_cnn")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--optimizer", choices=["adam", "sgd"], default="adam")
    p.add_argument("--lr", type=float, default=3e-3, help="peak lr with --schedule onecycle")
    p.add_argument("--loc-lr-mult", type=float, default=1.0)
    p.add_argument("--schedule", choices=["none", "onecycle", "cosine"], default="onecycle")
    p.add_argument("--st-out", type=int, default=None, help="ST output side (default: 42)")
    p.add_argument("--st-pool", type=int, default=None,
                   help="average pool after the ST (default: the model's rule, 2 at 42 px)")
    p.add_argument("--loc-down", type=int, default=2, help="loc net input downsampling")
    p.add_argument("--transform", default="affine")
    p.add_argument("--bound", action="store_true", help="tanh-bounded transform parameters")
    p.add_argument("--fixed", action="store_true", help="distort the training digits once")
    p.add_argument("--loc-hidden", type=int, default=20, help="loc net FC width")
    p.add_argument("--loc-norm", action="store_true", help="batch norm in the loc net")
    p.add_argument("--loc-channels", type=int, nargs="+", default=[20, 20])
    p.add_argument("--dropout", type=float, default=0.0, help="before the linear classifier")
    p.add_argument("--wd", type=float, default=0.0, help="decoupled weight decay (AdamW)")
    p.add_argument("--smooth", type=float, default=0.1, help="label smoothing (training loss)")
    p.add_argument("--train", type=int, default=4000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)

    digits = load_sample()
    perm = torch.randperm(len(digits.labels), generator=torch.Generator().manual_seed(a.seed))
    x = digits.images[perm].float().div(255).unsqueeze(1)
    y = digits.labels[perm]
    x_tr, y_tr, x_te, y_te = x[: a.train], y[: a.train], x[a.train :], y[a.train :]
    rts = make_distortion(a.distortion)
    size = tuple(rts.out_size)
    gen = torch.Generator().manual_seed(1000 + a.seed)
    x_te = rts(x_te, gen)
    fixed = rts(x_tr, gen) if a.fixed else None

    net = (STCNN(1, size, 10, st_out_size=a.st_out, st_pool=a.st_pool,
                 loc_downsample=a.loc_down, transform=a.transform, bound=a.bound,
                 loc_kwargs={"hidden": a.loc_hidden, "channels": a.loc_channels,
                            "norm": a.loc_norm})
           if a.model == "st_cnn" else CNN(1, size, 10))
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
        with torch.no_grad():
            err = float((net(x_te).argmax(1) != y_te).float().mean())
        diag = "".join(f" {k} {v:.3g}" for st in net.spatial_transformers()
                       for k, v in st.diagnostics().items())
        print(f"epoch {epoch + 1:3d} loss {loss.item():.3f} test error {100 * err:.2f}%{diag}",
              flush=True)
    print(json.dumps({**vars(a), "test_error_pct": round(100 * err, 2),
                      "wall_s": round(time.perf_counter() - t0, 1)}))


if __name__ == "__main__":
    main()
