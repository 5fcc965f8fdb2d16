"""``stnlab-report DIR [DIR ...] [--out DIR] [--metric KEY]``: see ``stnlab.report``."""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from pathlib import Path

from stnlab.cli.args import ArgumentParser
from stnlab.report import collect, report


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(
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
    for d in args.dirs:  # checked before anything is written
        if not d.is_dir():
            parser.error(f"{d}: {'not a directory' if d.exists() else 'no such directory'}; "
                         "give a multirun directory (outputs/<task>/multiruns/<date>) or a job's")
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        parser.error(f"--out {args.out} is a file; give a directory")
    jobs = collect(args.dirs)
    if not jobs:
        print("stnlab-report: no job directories found (a job has .hydra/ or results.json) "
              f"under {', '.join(map(str, args.dirs))}", file=sys.stderr)
        return 1
    metrics = sorted({k for j in jobs for k, v in (j.results or {}).items()
                      if isinstance(v, (int, float)) and not isinstance(v, bool)
                      and math.isfinite(v)})
    if metrics and args.metric not in metrics:
        parser.error(f"--metric {args.metric!r} is in no job's results.json; "
                     f"one of: {', '.join(metrics)}")
    rep = report(args.dirs, out, args.metric)
    done = sum(j.value is not None for j in rep.jobs)
    bad = len(rep.jobs) - done
    print(f"stnlab-report: {len(rep.jobs)} job(s), {done} in the table"
          + (f", {bad} failed/missing (listed in the report)" if bad else "")
          + f" -> {out / 'report.md'}")
    for job in rep.jobs:  # each failed job's own error (its log's last ERROR line)
        if job.value is None and job.error:
            print(f"  {job.status.upper()} {job.name}: {job.error}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
