"""Does ``stnlab.cpu.use_small_input_conv`` (a hand-written input gradient for the first
convolution, ``small_input_conv: true`` in conf/train.yaml) earn its place? A training step of
the models of three studies, with and without it, paired.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/bench_small_input_conv.py --rounds 30

Two copies of each model with the same weights; one of them goes through
``use_small_input_conv``, the other keeps plain ``nn.Conv2d/3d``. Each round times ``steps`` steps
(forward, cross-entropy, backward, Adam) of both, in alternating order, so that drift of a shared
machine hits both; the figure is the median over rounds of (step without) / (step with).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from stnlab.cli.allocator import keep_freed_memory
from stnlab.cpu import use_small_input_conv
from stnlab.models import STCNN, STCNN3D, SequenceSTCNNMulti


def _models():
    """name -> (constructor, input batch, loss of the output)."""
    seq_t = torch.cat([torch.randint(1, 6, (64, 1)), torch.randint(0, 11, (64, 5))], 1)

    def seq_loss(out):
        length, digits = out
        return F.cross_entropy(length, seq_t[:, 0]) + F.cross_entropy(
            digits.flatten(0, 1), seq_t[:, 1:].flatten())

    y10 = torch.randint(0, 10, (64,))
    y10_3d = torch.randint(0, 10, (32,))
    return {
        "ST-CNN (default, 42x42, batch 64)": (
            lambda: STCNN(1, 42, 10), torch.rand(64, 1, 42, 42),
            lambda out: F.cross_entropy(out, y10)),
        "seq ST-CNN Multi (64x64, batch 64)": (
            lambda: SequenceSTCNNMulti(1, 64, 11), torch.rand(64, 1, 64, 64), seq_loss),
        "ST-CNN3D (32^3, batch 32)": (
            lambda: STCNN3D(1, 32, 10), torch.rand(32, 1, 32, 32, 32),
            lambda out: F.cross_entropy(out, y10_3d)),
    }


def _step(model, opt, x, loss_fn) -> None:
    opt.zero_grad(set_to_none=True)
    loss_fn(model(x)).backward()
    opt.step()


def bench(name: str, steps: int, rounds: int) -> None:
    make, x, loss_fn = _models()[name]
    torch.manual_seed(0)
    off = make()
    on = make()
    on.load_state_dict(off.state_dict())
    switched = use_small_input_conv(on)
    pair = {"with": (on, torch.optim.Adam(on.parameters(), 1e-3)),
            "without": (off, torch.optim.Adam(off.parameters(), 1e-3))}
    for model, opt in pair.values():
        for _ in range(2):
            _step(model, opt, x, loss_fn)
    times: dict[str, list[float]] = {k: [] for k in pair}
    for r in range(rounds):
        for k in (("with", "without") if r % 2 == 0 else ("without", "with")):
            model, opt = pair[k]
            t0 = time.perf_counter()
            for _ in range(steps):
                _step(model, opt, x, loss_fn)
            times[k].append((time.perf_counter() - t0) / steps)
    ratios = sorted(b / a for a, b in zip(times["with"], times["without"], strict=True))
    q = len(ratios) // 4
    med = {k: 1e3 * statistics.median(v) for k, v in times.items()}
    print(f"{name}: {switched} SmallInputConv layer(s); step with {med['with']:.1f} ms, "
          f"without {med['without']:.1f} ms (medians); "
          f"paired ratio without/with: median {statistics.median(ratios):.3f} "
          f"(quartiles {ratios[q]:.3f}-{ratios[-q - 1]:.3f}, {rounds} rounds of {steps} steps)",
          flush=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--only", default=None, help="a substring of the model names")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    kept = keep_freed_memory()  # as stnlab-train does
    print(f"torch {torch.__version__}, 1 thread, freed memory kept: {kept}", flush=True)
    for name in _models():
        if args.only is None or args.only in name:
            bench(name, args.steps, args.rounds)


if __name__ == "__main__":
    main()
