"""Training-step throughput of the CNN vs the ST-CNN (the spatial transformer's overhead).

The ST's output has the size of its input, so the classifier does the same work in both
models and the difference is the transformer (localisation net, grid, sampler, and the
gradient with respect to the transformer's output that the first conv layer must now
compute).

    PYTHONPATH=src python benchmarks/bench_st_overhead.py            # batch 128, 2 threads
    PYTHONPATH=src python benchmarks/bench_st_overhead.py --sizes 42 --transform tps

Rounds of a few steps alternate CNN and ST-CNN so that drift in machine speed hits both. The
machine may be shared: each round also records how much CPU *other* processes used meanwhile
(from /proc/stat, Linux only); rounds where others used more than ``--max-foreign`` of a core
are set aside and more rounds are run (up to ``--max-rounds``). The time per step is the
minimum over the clean rounds (``timeit``'s advice), the median is printed beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch
import torch.nn.functional as F

from stnlab.cpu import use_small_input_conv
from stnlab.models import CNN, STCNN

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


SMALL_INPUT_CONV = True  # --native-input-grad: False

def _jiffies() -> tuple[int, int] | None:
    """(busy jiffies of the whole machine, jiffies of this process) or None if unknown."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        busy = sum(v[:8]) - v[3] - v[4]  # all but idle and iowait
        with open("/proc/self/stat") as f:
            s = f.read().rsplit(")", 1)[1].split()
        return busy, int(s[11]) + int(s[12])
    except (OSError, ValueError, IndexError):
        return None


def _step(model, opt, x, y):
    opt.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()


def bench_size(size: int, batch: int, steps: int, min_clean: int, max_rounds: int,
               max_foreign: float, warmup: int, st_out: int | None = None,
               channels_last: bool = True, **st_kwargs) -> dict:
    torch.manual_seed(0)
    x = torch.rand(batch, 1, size, size)
    y = torch.randint(0, 10, (batch,))
    models = {
        "cnn": CNN(1, (size, size), 10, channels_last=channels_last),
        "st_cnn": STCNN(1, (size, size), 10, st_out_size=(st_out or size, st_out or size),
                        channels_last=channels_last, **st_kwargs),
    }
    for m in models.values() if SMALL_INPUT_CONV else ():
        use_small_input_conv(m)  # as stnlab-train does (small_input_conv: true)
    opts = {k: torch.optim.SGD(m.parameters(), lr=0.01) for k, m in models.items()}
    for k, m in models.items():
        m.train()
        for _ in range(warmup):
            _step(m, opts[k], x, y)
    times: dict[str, list[float]] = {k: [] for k in models}
    clean: dict[str, list[float]] = {k: [] for k in models}
    for r in range(max_rounds):
        order = list(models) if r % 2 == 0 else list(reversed(models))
        for k in order:
            j0 = _jiffies()
            t0 = time.perf_counter()
            for _ in range(steps):
                _step(models[k], opts[k], x, y)
            dt = (time.perf_counter() - t0)
            j1 = _jiffies()
            times[k].append(dt / steps)
            if j0 is None or j1 is None:
                clean[k].append(dt / steps)
            else:
                foreign = max((j1[0] - j0[0]) - (j1[1] - j0[1]), 0) / _TICK  # core-seconds
                if foreign <= max_foreign * dt:
                    clean[k].append(dt / steps)
        if r + 1 >= 2 * min_clean and all(len(v) >= min_clean for v in clean.values()):
            break
    use = {k: (clean[k] if clean[k] else times[k]) for k in models}
    step = {k: min(v) for k, v in use.items()}
    med = {k: statistics.median(v) for k, v in use.items()}
    return {
        "size": size,
        "cnn_img_s": batch / step["cnn"],
        "st_cnn_img_s": batch / step["st_cnn"],
        "cnn_step_ms": 1e3 * step["cnn"],
        "st_cnn_step_ms": 1e3 * step["st_cnn"],
        "ratio": step["st_cnn"] / step["cnn"],
        "ratio_median": med["st_cnn"] / med["cnn"],
        "rounds": len(times["cnn"]),
        "clean_rounds": min(len(v) for v in clean.values()),
        "params_cnn": sum(p.numel() for p in models["cnn"].parameters()),
        "params_st_cnn": sum(p.numel() for p in models["st_cnn"].parameters()),
    }


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[28, 42, 60])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=2, help="steps per timed round")
    ap.add_argument("--min-clean", type=int, default=8, help="clean rounds wanted per model")
    ap.add_argument("--max-rounds", type=int, default=60)
    ap.add_argument("--max-foreign", type=float, default=0.1,
                    help="a round is clean if other processes used at most this many cores")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--transform", default="affine")
    ap.add_argument("--loc-downsample", type=int, default=None)
    ap.add_argument("--st-out", type=int, default=None,
                    help="ST output size (default: the input size, so the CNNs do equal work)")
    ap.add_argument("--no-channels-last", action="store_true",
                    help="ablation: keep the CNNs in NCHW layout")
    ap.add_argument("--native-input-grad", action="store_true",
                    help="ablation: PyTorch's own input gradient for the first conv layer")
    ap.add_argument("--json", default=None, help="also write the results to this file")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    global SMALL_INPUT_CONV
    SMALL_INPUT_CONV = not args.native_input_grad
    st_kwargs = {"transform": args.transform}
    if args.loc_downsample is not None:
        st_kwargs["loc_downsample"] = args.loc_downsample
    print(f"torch {torch.__version__}, {args.threads} threads, batch {args.batch}, "
          f"transform {args.transform}, ST output {args.st_out or 'same as input'}, "
          f"loc_downsample {args.loc_downsample or 'default'}, "
          f"channels_last {not args.no_channels_last}, "
          f"native input grad {args.native_input_grad}, rounds of {args.steps} steps")
    print(f"{'size':>5} {'CNN img/s':>10} {'ST-CNN img/s':>13} {'CNN ms':>8} {'ST ms':>8} "
          f"{'ratio':>6} {'(median)':>8} {'clean/rounds':>13}")
    results = []
    for size in args.sizes:
        r = bench_size(size, args.batch, args.steps, args.min_clean, args.max_rounds,
                       args.max_foreign, args.warmup, st_out=args.st_out,
                       channels_last=not args.no_channels_last, **st_kwargs)
        results.append(r)
        print(f"{size:>5} {r['cnn_img_s']:>10.0f} {r['st_cnn_img_s']:>13.0f} "
              f"{r['cnn_step_ms']:>8.1f} {r['st_cnn_step_ms']:>8.1f} {r['ratio']:>6.3f} "
              f"{r['ratio_median']:>8.3f} {r['clean_rounds']:>6}/{r['rounds']:<6}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
