"""``stnlab-preview --distortion NAME | --all``: see ``stnlab.analysis.preview``."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from stnlab.analysis.preview import EXTRA, render, save_png
from stnlab.cli.args import ArgumentParser, positive_int
from stnlab.data.distortions import DISTORTIONS


def _parse_sets(items: list[str], parser: ArgumentParser) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--set expects key=value, got {item!r}, e.g. --set scale=[0.8,1.0]")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def main(argv: list[str] | None = None) -> int:
    names = [*DISTORTIONS, *EXTRA]
    parser = ArgumentParser(prog="stnlab-preview", description=__doc__.split("\n")[0])
    parser.add_argument("override", nargs="*", help="data.distortion=NAME (Hydra-style)")
    parser.add_argument("--distortion", "-d", help=f"one of: {', '.join(names)} (or T)")
    parser.add_argument("--all", action="store_true", help="every distortion, into --out-dir")
    parser.add_argument("--out", type=Path, help="PNG path (default <out-dir>/<name>.png)")
    parser.add_argument("--out-dir", type=Path, default=Path("docs/distortions"))
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a distortion parameter, e.g. --set scale=[0.8,1.0]",
    )
    parser.add_argument("--rows", type=positive_int, default=6)
    parser.add_argument("--cols", type=positive_int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    name = args.distortion
    for item in args.override:
        key, _, value = item.partition("=")
        if key.split(".")[-1] != "distortion" or not value:
            parser.error(f"unknown override {item!r}; use data.distortion=NAME")
        name = value
    kwargs = _parse_sets(args.set, parser)
    if args.all == (name is not None):
        parser.error("give one distortion (--distortion NAME or data.distortion=NAME) or --all")
    todo = names if args.all else [name]
    for item in todo:
        try:
            grid = render(item, rows=args.rows, cols=args.cols, seed=args.seed, **kwargs)
        except (ValueError, TypeError) as err:  # a bad name or --set value
            print(f"stnlab-preview: {err}", file=sys.stderr)
            return 2
        path = args.out if (args.out and not args.all) else args.out_dir / f"{item}.png"
        save_png(grid, path)
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
