"""Training-step time of the sequence models: ST-CNN Single and Multi against the CNN (the
paper: ST-CNN Multi "only 6% slower" on SVHN 64x64, on a GPU).

    PYTHONPATH=src python benchmarks/bench_sequence_speed.py            # batch 64, 1 thread
    PYTHONPATH=src python benchmarks/bench_sequence_speed.py --threads 2 --batch 128
    PYTHONPATH=src python benchmarks/bench_sequence_speed.py --profile   # where Multi's time goes
    PYTHONPATH=src python benchmarks/bench_sequence_speed.py --arch paper --rounds 4 --steps 1
    PYTHONPATH=src python benchmarks/bench_sequence_speed.py --malloc default   # glibc's policy
    PYTHONPATH=src python benchmarks/bench_sequence_speed.py --ablate   # one transformer at a time

A step is forward, the sequence loss, backward and an Adam update on a 64x64 batch. Rounds
alternate the models so that drift in machine speed hits all of them; the time per step is the
minimum over rounds (``timeit``'s advice), the median beside it, and the ratio to the CNN is
also given paired: the median over rounds of the round's time over the CNN's in that round
(drift cancels). Rounds that other processes disturbed are not set aside here (see
``bench_st_overhead.py`` for that): on a shared machine read the medians with care.

``--arch study`` (default) times the models of the multi-digit study; ``--arch paper`` the
sizes of the paper's SVHN CNN (Goodfellow et al.: 8 conv layers of 48-192 channels, 5x5, two
FC layers of 3,072; recalled, not checked against the text), with no pooling on the layers
whose pool has stride 1 there (64 -> 32 -> 32 -> 16 -> 16 -> 8 -> 8 -> 4 -> 4).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from stnlab.cli.allocator import keep_freed_memory
from stnlab.cpu import use_small_input_conv
from stnlab.models import SequenceCNN, SequenceSTCNNMulti, SequenceSTCNNSingle

MODELS = {"CNN": SequenceCNN, "ST-CNN Single": SequenceSTCNNSingle,
          "ST-CNN Multi": SequenceSTCNNMulti}
ARCHS = {
    "study": {},
    "paper": {"channels": (48, 64, 128, 160, 192, 192, 192, 192), "kernel_sizes": 5,
              "pools": (2, 1) * 4, "hidden": (3072, 3072)},
}


def _step(model, opt, x, targets) -> None:
    opt.zero_grad(set_to_none=True)
    length, digits = model(x)
    loss = F.cross_entropy(length, targets[:, 0]) + F.cross_entropy(
        digits.flatten(0, 1), targets[:, 1:].flatten()) * digits.shape[1]
    loss.backward()
    opt.step()


def ablations(kw: dict) -> dict[str, torch.nn.Module]:
    """Where Multi's time goes: the CNN with a gradient for its input (what any transformer on
    the image makes the first conv layer compute) and Multi with one transformer at a time."""
    models = {"CNN, input grad": SequenceCNN(1, 64, 11, **kw)}
    for at in ((0,), (1,), (2,), (3,), (1, 2, 3)):
        models[f"Multi ST at {','.join(map(str, at))}"] = SequenceSTCNNMulti(1, 64, 11, st_at=at,
                                                                            **kw)
    return models


def bench(batch: int, steps: int, rounds: int, warmup: int, arch: str = "study",
          ablate: bool = False) -> dict[str, dict[str, float]]:
    torch.manual_seed(0)
    x = torch.rand(batch, 1, 64, 64)
    targets = torch.cat([torch.randint(1, 6, (batch, 1)), torch.randint(0, 11, (batch, 5))], 1)
    models = {k: cls(1, 64, 11, **ARCHS[arch]) for k, cls in MODELS.items()}
    if ablate:
        models.update(ablations(ARCHS[arch]))
    for m in models.values():
        use_small_input_conv(m)  # as stnlab-train does (small_input_conv: true)
    inputs = {k: x.clone().requires_grad_() if k == "CNN, input grad" else x for k in models}
    opts = {k: torch.optim.Adam(m.parameters(), lr=1e-3) for k, m in models.items()}
    for k, m in models.items():
        for _ in range(warmup):
            _step(m, opts[k], inputs[k], targets)
    times: dict[str, list[float]] = {k: [] for k in models}
    for r in range(rounds):
        for k in (list(models) if r % 2 == 0 else list(reversed(models))):
            t0 = time.perf_counter()
            for _ in range(steps):
                _step(models[k], opts[k], inputs[k], targets)
            times[k].append((time.perf_counter() - t0) / steps)
    base, base_med = min(times["CNN"]), statistics.median(times["CNN"])
    return {k: {"step_ms": 1e3 * min(v), "median_ms": 1e3 * statistics.median(v),
                "ratio": min(v) / base, "ratio_median": statistics.median(v) / base_med,
                "ratio_paired": statistics.median(
                    [a / b for a, b in zip(v, times["CNN"], strict=True)]),
                "params": sum(p.numel() for p in models[k].parameters())}
            for k, v in times.items()}


def profile(batch: int, steps: int = 4, top: int = 12) -> None:
    """``torch.profiler`` of ``steps`` steps of the CNN and ST-CNN Multi: the ops whose self CPU
    time a step differs most, Multi less the CNN (docs/performance.md, "Sequence models")."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    torch.manual_seed(0)
    x = torch.rand(batch, 1, 64, 64)
    targets = torch.cat([torch.randint(1, 6, (batch, 1)), torch.randint(0, 11, (batch, 5))], 1)
    per_op: dict[str, dict[str, float]] = {}
    for name in ("CNN", "ST-CNN Multi"):
        model = MODELS[name](1, 64, 11)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        for _ in range(2):
            _step(model, opt, x, targets)
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(steps):
                _step(model, opt, x, targets)
        per_op[name] = {e.key: e.self_cpu_time_total / 1e3 / steps for e in prof.key_averages()}
    cnn, multi = per_op["CNN"], per_op["ST-CNN Multi"]
    print(f"\nself CPU ms a step under the profiler: CNN {sum(cnn.values()):.1f}, "
          f"Multi {sum(multi.values()):.1f}")
    for op in sorted(set(cnn) | set(multi), key=lambda k: cnn.get(k, 0) - multi.get(k, 0))[:top]:
        print(f"{op[:50]:<50} CNN {cnn.get(op, 0):7.2f}  Multi {multi.get(op, 0):7.2f}  "
              f"diff {multi.get(op, 0) - cnn.get(op, 0):+7.2f}")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=3, help="steps per timed round")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--malloc", choices=("keep", "default"), default="keep",
                    help="keep freed blocks as stnlab-train does (keep_freed_memory=true), or "
                         "glibc's default policy")
    ap.add_argument("--arch", choices=sorted(ARCHS), default="study",
                    help="the study's model sizes or the paper's SVHN CNN's")
    ap.add_argument("--ablate", action="store_true",
                    help="also time the CNN with an input gradient and Multi with one "
                         "transformer at a time")
    ap.add_argument("--json", default=None, help="also write the results to this file")
    ap.add_argument("--profile", action="store_true",
                    help="also profile the CNN and Multi: the ops that differ most")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    kept = args.malloc == "keep" and keep_freed_memory()
    print(f"torch {torch.__version__}, {args.threads} thread(s), batch {args.batch}, 64x64, "
          f"{args.arch} sizes, {args.rounds} rounds of {args.steps} steps, freed memory "
          f"{'kept' if kept else 'returned (malloc default)'}")
    res = bench(args.batch, args.steps, args.rounds, args.warmup, args.arch, args.ablate)
    print(f"{'model':<17} {'params':>10} {'step ms':>8} {'median':>8} {'ratio':>6} {'(median)':>8}"
          f" {'(paired)':>8}")
    for k, r in res.items():
        print(f"{k:<17} {r['params']:>10,} {r['step_ms']:>8.1f} {r['median_ms']:>8.1f} "
              f"{r['ratio']:>6.3f} {r['ratio_median']:>8.3f} {r['ratio_paired']:>8.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)
    if args.profile:
        profile(args.batch)
    return res


if __name__ == "__main__":
    main()
