"""Bare-loop calibration of MNIST addition on the framework's own DataModule (validation only).

No Lightning, no Hydra: the addition data of ``stnlab-train experiment=addition_study``
(the sample's split, the same RTS pairs), one of Table 1's models, Adam and a plain
cross-entropy loop, the fixed validation set evaluated every ``--every`` steps. It chose the
study's batch norm and localisation rate (docs/results.md, "MNIST addition"):

    python benchmarks/calibrate_addition.py --model cnn --steps 3000                 # chance
    python benchmarks/calibrate_addition.py --model cnn --batch-norm --steps 3000
    python benchmarks/calibrate_addition.py --model st_cnn --num-parallel 2 --batch-norm \
        --loc-lr-mult 0.1 --log benchmarks/results/calibrate_addition.jsonl

The test set is never touched.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F

from stnlab.data import DistortedMNIST
from stnlab.models import CNN, FCN, STCNN, STFCN
from stnlab.spatial import localisation_parameters

MODELS = {"cnn": CNN, "fcn": FCN, "st_cnn": STCNN, "st_fcn": STFCN}


def _val_error(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    net.eval()
    with torch.no_grad():
        pred = torch.cat([net(x[i : i + 250]).argmax(1) for i in range(0, len(y), 250)])
    net.train()
    return float((pred != y).float().mean()) * 100


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
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--every", type=int, default=500)
    p.add_argument("--data-dir", default="data")
    p.add_argument("--log", default=None, help="append the result as one JSON line here")
    a = p.parse_args()

    torch.manual_seed(a.seed)
    dm = DistortedMNIST(distortion="addition", batch_size=a.batch_size, seed=a.seed,
                        data_dir=a.data_dir)
    dm.setup("fit")
    xv, yv = dm.val_set.tensors[:2]
    kw = {"batch_norm": a.batch_norm}
    if a.model.startswith("st"):
        kw["num_parallel"] = a.num_parallel
    net = MODELS[a.model](xv.shape[1], tuple(xv.shape[2:]), 19, **kw)
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
                print(f"step {step}  loss {loss.item():.3f}  val error {hist[-1][1]:.1f}%  "
                      f"{time.perf_counter() - t0:.0f} s", flush=True)
            if step >= a.steps:
                break
        epoch += 1
    record = {**vars(a), "params": sum(q.numel() for q in net.parameters()),
              "val_error_by_step": hist, "wall_s": round(time.perf_counter() - t0)}
    print(json.dumps(record))
    if a.log:
        with open(a.log, "a") as f:
            f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
