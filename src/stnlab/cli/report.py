"""``stnlab-report DIR [DIR ...] [--out DIR] [--metric KEY]``: see ``stnlab.report``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from stnlab.report import report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="stnlab-report",
        description="Tabulate a stnlab sweep (multirun directory) against the paper's figures: "
                    "report.md, report.csv, jobs.csv, error_by_model.png, curves.png.")
    parser.add_argument("dirs", nargs="+", type=Path,
                        help="multirun directories (or single job directories)")
    parser.add_argument("--out", type=Path, default=None,
                        help="where to write the report (default: the first directory)")
    parser.add_argument("--metric", default="test/error",
                        help="results.json key to tabulate (default: test/error)")
    args = parser.parse_args(argv)
    out = args.out if args.out is not None else args.dirs[0]
    rep = report(args.dirs, out, args.metric)
    done = sum(j.value is not None for j in rep.jobs)
    bad = len(rep.jobs) - done
    print(f"stnlab-report: {len(rep.jobs)} job(s), {done} in the table"
          + (f", {bad} failed/missing (listed in the report)" if bad else "")
          + f" -> {out / 'report.md'}")
    if not rep.jobs:
        print("stnlab-report: no job directories found (a job has .hydra/ or results.json)",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
