"""``stnlab-robustness RUN [RUN ...] [--kind ...]``: see ``stnlab.analysis.robustness``."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from stnlab.analysis.robustness import AXES, DEFAULT_VALUES, run_curve, write_curves
from stnlab.cli.args import ArgumentParser, finite_float
from stnlab.errors import StnlabError
from stnlab.run.evaluate import find_checkpoint


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(
        prog="stnlab-robustness",
        description="Test error of trained runs against the rotation angle, the scale or "
                    "(cluttered runs) the clutter of the test digits (multi-digit runs: the "
                    "sequence error of the rotated or scaled test images; volumetric runs: the "
                    "test digits' slabs turned about --axis): one curve per run, as CSV and PNG.")
    parser.add_argument("runs", nargs="+", help="run directories or .ckpt files")
    parser.add_argument("--kind", choices=sorted(DEFAULT_VALUES), default="rotation")
    parser.add_argument("--values", type=finite_float, nargs="+", default=None,
                        help="angles in degrees, scale factors or clutter patch counts "
                             "(default: 0-180 by 15 / 0.5-1.5 / 0 4 8 16)")
    parser.add_argument("--axis", choices=AXES, default="z",
                        help="volumetric runs: the axis the slabs turn about (z: in the digit's "
                             "plane, the default; x, y: tilting it)")
    parser.add_argument("--out", type=Path, default=Path("."), help="output folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    values = args.values or DEFAULT_VALUES[args.kind]
    if args.kind == "scale" and min(values) <= 0:
        parser.error(f"--values: scale factors must be > 0, got {min(values)}")
    if args.kind == "clutter" and any(v < 0 or v != int(v) for v in values):
        parser.error(f"--values: clutter patch counts must be whole numbers >= 0, got {values}")
    try:
        for run in args.runs:  # every run exists before the first curve is computed
            find_checkpoint(run)
        curves: dict[str, list[float]] = {}
        for run in args.runs:
            label, errors = run_curve(run, args.kind, values, args.axis)
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
