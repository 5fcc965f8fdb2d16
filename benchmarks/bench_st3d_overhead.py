"""Training-step time of CNN3D vs STCNN3D on 32^3 volumes (the volumetric ST's overhead).

The ST's output has the size of its input, so both models run the same CNN3D body; the
difference is the transformer: the 3-D localisation net, the grid, the trilinear sampler and
the gradient with respect to the sampled volume that the first conv layer must now compute.

    OMP_NUM_THREADS=2 PYTHONPATH=src python benchmarks/bench_st3d_overhead.py   # batch 32
    ... --transform attention3d --size 32 --batch 32 --rounds 8

One step is forward, cross-entropy, backward and an SGD update. After ``--warmup`` steps per
model, rounds of ``--steps`` steps alternate the models (so drift in machine speed hits both);
the figure is the median step time over the rounds. Takes well under a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from stnlab.cpu import use_small_input_conv
from stnlab.models import CNN3D, STCNN3D

SMALL_INPUT_CONV = True  # --native-input-grad: False

def _step(model, opt, x, y) -> None:
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    opt.step()


def bench(size: int, batch: int, rounds: int, steps: int, warmup: int, transform: str) -> dict:
    torch.manual_seed(0)
    x = torch.rand(batch, 1, size, size, size)
    y = torch.randint(0, 10, (batch,))
    models = {
        "cnn3d": CNN3D(1, (size,) * 3, 10),
        "st_cnn3d": STCNN3D(1, (size,) * 3, 10, transform=transform),
    }
    for m in models.values() if SMALL_INPUT_CONV else ():
        use_small_input_conv(m)  # as stnlab-train does (small_input_conv: true)
    opts = {k: torch.optim.SGD(m.parameters(), lr=0.01) for k, m in models.items()}
    for k, m in models.items():
        m.train()
        for _ in range(warmup):
            _step(m, opts[k], x, y)
    times: dict[str, list[float]] = {k: [] for k in models}
    for r in range(rounds):
        for k in models if r % 2 == 0 else reversed(models):
            t0 = time.perf_counter()
            for _ in range(steps):
                _step(models[k], opts[k], x, y)
            times[k].append((time.perf_counter() - t0) / steps)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "cnn3d_ms": 1e3 * med["cnn3d"],
        "st_cnn3d_ms": 1e3 * med["st_cnn3d"],
        "ratio": med["st_cnn3d"] / med["cnn3d"],
        "spread": {k: (1e3 * min(v), 1e3 * max(v)) for k, v in times.items()},
        "params": {k: sum(p.numel() for p in m.parameters()) for k, m in models.items()},
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--steps", type=int, default=2, help="steps per timed round")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--transform", default="affine3d")
    ap.add_argument(
        "--native-input-grad",
        action="store_true",
        help="ablation: PyTorch's own input gradient for the first conv layer",
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    global SMALL_INPUT_CONV
    SMALL_INPUT_CONV = not args.native_input_grad
    r = bench(args.size, args.batch, args.rounds, args.steps, args.warmup, args.transform)
    print(
        f"torch {torch.__version__}, {args.threads} threads, {args.size}^3, batch "
        f"{args.batch}, transform {args.transform}, median of {args.rounds} rounds of "
        f"{args.steps} steps, native input grad {args.native_input_grad}"
    )
    for k in ("cnn3d", "st_cnn3d"):
        lo, hi = r["spread"][k]
        print(
            f"  {k:<9} {r[k + '_ms']:7.1f} ms/step  (rounds {lo:.1f} .. {hi:.1f})  "
            f"{r['params'][k]:,} parameters"
        )
    print(f"  ratio STCNN3D / CNN3D: {r['ratio']:.2f}")
    return r


if __name__ == "__main__":
    main()
