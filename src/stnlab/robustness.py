"""``stnlab-robustness RUN [RUN ...]``: test error against one controlled distortion.

Each run's own test digits (the same digits as its fixed test set) are rotated by each angle
(or scaled by each factor) about the centre of their 28x28 frame, with nothing else changed,
and that centre put on the centre of the run's canvas (28x28 for R, 42x42 for RTS, ...).
The curves of several runs share one plot: ``robustness_<kind>.png`` and
``robustness_<kind>.csv`` in ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from stnlab.config import to_plain
from stnlab.data.distortions import similarity_warp
from stnlab.errors import StnlabError
from stnlab.evaluate import find_checkpoint, load_run
from stnlab.report import model_label
from stnlab.train import build_data_and_module

log = logging.getLogger(__name__)

DEFAULT_VALUES = {
    "rotation": [float(a) for a in range(0, 181, 15)],  # degrees
    "scale": [0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5],
}


def warp_digits(digits: torch.Tensor, canvas: int, angle: float = 0.0,
                scale: float = 1.0) -> torch.Tensor:
    """``(N, 28, 28)`` uint8 digits -> ``(N, 1, canvas, canvas)``: each digit rotated by
    ``angle`` degrees and scaled by ``scale`` about the centre of its 28x28 frame, which lands
    on the canvas's centre (as the R distortion rotates, with no shift of its own)."""
    n = len(digits)
    return similarity_warp(digits.unsqueeze(1).float().div(255),
                           torch.full((n,), float(angle), dtype=torch.float64),
                           torch.full((n,), float(scale), dtype=torch.float64), (canvas, canvas))


@torch.no_grad()
def error_curve(net: torch.nn.Module, digits: torch.Tensor, labels: torch.Tensor, canvas: int,
                kind: str, values: Sequence[float], batch_size: int = 500) -> list[float]:
    """Test error (fraction) of ``net`` at each value of the ``kind`` distortion."""
    net.eval()
    errors = []
    for v in values:
        x = warp_digits(digits, canvas, **({"angle": v} if kind == "rotation" else {"scale": v}))
        wrong = sum(int((net(xb).argmax(1) != yb).sum())
                    for xb, yb in zip(x.split(batch_size), labels.split(batch_size), strict=True))
        errors.append(wrong / len(labels))
    return errors


def run_curve(run: str | Path, kind: str, values: Sequence[float]) -> tuple[str, list[float]]:
    """The label ("ST-CNN Aff (RTS, seed 0)") and error curve of one run's best checkpoint."""
    ckpt = find_checkpoint(run)
    state, cfg = load_run(ckpt)
    data, module = build_data_and_module(cfg)
    module.load_state_dict(state["state_dict"])
    channels, height, width = data.dims
    if channels != 1 or height != width or data.distortion_name in ("cluttered", "addition"):
        raise StnlabError(f"{ckpt}: robustness curves need a single-digit, single-channel task "
                          f"on a square canvas (R, RTS, P, E, none), not {data.distortion_name}.")
    digits, labels = data.test_digits()
    label, _ = model_label({}, to_plain(cfg))
    label = f"{label} ({data.distortion_name}, seed {cfg.seed})"
    errors = error_curve(module.net, digits, labels, width, kind, values)
    log.info("%s: %s", label, " ".join(f"{100 * e:.1f}" for e in errors))
    return label, errors


def write_curves(curves: dict[str, list[float]], kind: str, values: Sequence[float],
                 out: Path) -> tuple[Path, Path]:
    """``robustness_<kind>.csv`` (error % per run and value) and the PNG of the curves."""
    from matplotlib.figure import Figure

    out.mkdir(parents=True, exist_ok=True)
    csv_path, png_path = out / f"robustness_{kind}.csv", out / f"robustness_{kind}.png"
    with csv_path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["run", *values])
        for label, errors in curves.items():
            w.writerow([label, *(f"{100 * e:.2f}" for e in errors)])
    fig = Figure(figsize=(7, 4.2), constrained_layout=True)
    ax = fig.add_subplot()
    for label, errors in curves.items():
        ax.plot(values, [100 * e for e in errors], marker="o", ms=3, label=label)
    ax.set_xlabel("rotation (degrees)" if kind == "rotation" else "scale factor")
    ax.set_ylabel("test error (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.set_title(f"Test error against {kind} of the test digits")
    ax.legend(fontsize=8)
    fig.savefig(png_path, dpi=120)
    return csv_path, png_path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="stnlab-robustness",
        description="Test error of trained runs against the rotation angle or the scale of the "
                    "test digits: one curve per run, written as CSV and PNG.")
    parser.add_argument("runs", nargs="+", help="run directories or .ckpt files")
    parser.add_argument("--kind", choices=sorted(DEFAULT_VALUES), default="rotation")
    parser.add_argument("--values", type=float, nargs="+", default=None,
                        help="angles in degrees or scale factors (default: 0-180 by 15 / 0.5-1.5)")
    parser.add_argument("--out", type=Path, default=Path("."), help="output folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    values = args.values or DEFAULT_VALUES[args.kind]
    if args.kind == "scale" and min(values) <= 0:
        parser.error(f"--values: scale factors must be > 0, got {min(values)}")
    try:
        curves: dict[str, list[float]] = {}
        for run in args.runs:
            label, errors = run_curve(run, args.kind, values)
            if label in curves:  # two runs of one model, distortion and seed
                label = f"{label} [{Path(run).resolve().name}]"
            curves[label] = errors
    except StnlabError as e:
        parser.exit(2, f"stnlab-robustness: {e}\n")
    csv_path, png_path = write_curves(curves, args.kind, values, args.out)
    print(f"wrote {csv_path} and {png_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
