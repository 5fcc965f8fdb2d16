"""The sampler on a channels-last feature map: CPU ``grid_sample`` (through the NCHW copy and
its channels-last gradient: ``sample()`` without numba) against the numba kernels of
``stnlab.spatial._cpu`` (``stnlab[cpu]``; docs/performance.md, "Sequence models": ST-CNN
Multi's 32-channel 32x32 map).

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/bench_sampler.py [--shape 64 32 32 32]

Times forward alone and forward + backward (both gradients) of one affine warp, the median of
``--repeats`` runs after a warm-up; rounds alternate the paths. On a shared machine read the
paired figure: the median over rounds of a path's forward + backward time over
``grid_sample``'s in the same round. Freed memory is kept, as
``stnlab-train`` keeps it.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from stnlab.cli.allocator import keep_freed_memory
from stnlab.spatial import _cpu
from stnlab.spatial.layout import nchw_keeping_grad_layout


def grid_sample_path(u: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """What ``sample()`` does without numba."""
    return F.grid_sample(nchw_keeping_grad_layout(u), grid, align_corners=False)


PATHS = {"grid_sample": grid_sample_path, "numba rows": _cpu.sample_rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", type=int, nargs=4, default=[64, 32, 32, 32], help="B C H W")
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    keep_freed_memory()  # as stnlab-train does
    paths = {k: fn for k, fn in PATHS.items() if k != "numba rows" or _cpu.available()}
    torch.manual_seed(0)
    b, c, h, w = args.shape
    theta = torch.tensor([[0.9, 0.1, 0.05], [-0.1, 0.9, 0.0]]).expand(b, 2, 3)
    grid0 = F.affine_grid(theta, [b, c, h, w], align_corners=False)
    u = torch.randn(b, c, h, w).contiguous(memory_format=torch.channels_last).requires_grad_()
    grid = grid0.clone().requires_grad_()
    g_out = torch.randn(b, c, h, w).contiguous(memory_format=torch.channels_last)
    times: dict[str, dict[str, list[float]]] = {k: {"fwd": [], "fwd+bwd": []} for k in paths}
    for fn in paths.values():
        fn(u, grid).backward(g_out)  # warm-up
    for r in range(args.repeats):
        for name in (list(paths) if r % 2 == 0 else list(reversed(paths))):
            fn = paths[name]
            t0 = time.perf_counter()
            out = fn(u, grid)
            t1 = time.perf_counter()
            out.backward(g_out)
            t2 = time.perf_counter()
            times[name]["fwd"].append(1e3 * (t1 - t0))
            times[name]["fwd+bwd"].append(1e3 * (t2 - t0))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), map {args.shape}, "
          f"median of {args.repeats}")
    base = times["grid_sample"]["fwd+bwd"]
    for name, t in times.items():
        paired = statistics.median(a / b for a, b in zip(t["fwd+bwd"], base, strict=True))
        print(f"{name:<20} forward {statistics.median(t['fwd']):6.2f} ms   forward + backward "
              f"{statistics.median(t['fwd+bwd']):6.2f} ms   paired / grid_sample {paired:5.3f}")


if __name__ == "__main__":
    main()
