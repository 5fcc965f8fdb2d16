"""Reports: turn one or more sweep directories into the paper-style table and plots.

    stnlab-report outputs/table1/multiruns/<stamp> [more dirs...] [--out DIR] [--metric test/error]

Every job directory under the given directories (a directory with Hydra's ``.hydra/`` or a
``results.json``) is read: ``results.json`` (written by ``stnlab-train`` at the end of a job),
``config.yaml`` (the resolved config) and ``.hydra/overrides.yaml``. Jobs without results are
listed as failed; jobs a basic-sweeper multirun was going to launch but whose directory does
not exist are listed as missing. Written to ``--out`` (default: the first directory):

- ``report.md``: rows = model variants, columns = distortions, cells = mean ± sample std over
  seeds with n, and the paper's figure beside each cell; data sources, training length,
  parameter counts and fit times; failed and missing jobs; one line per job.
- ``report.csv``: the table in long form (one line per model x distortion).
- ``jobs.csv``: one line per job, failed and missing ones included.
- ``error_by_model.png`` (grouped bars, std error bars, the paper's figure as a marker) and
  ``curves.png`` (val/acc per epoch from each job's ``csv/metrics.csv``).

Jobs whose overrides differ in anything but the axes of the table (model, transform,
distortion, seed) and bookkeeping (paths, loggers, callbacks, trainer device choice) are not
averaged together: the differing overrides are added to the row label.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from stnlab.report.collect import collect
from stnlab.report.plots import plot_curves, plot_errors
from stnlab.report.tables import Report, build_report, render_markdown, write_csvs


def report(dirs: Sequence[Path | str], out: Path | str | None = None,
           metric: str = "test/error") -> Report:
    """Collect the jobs under ``dirs``, write report.md/.csv, jobs.csv and the plots to ``out``."""
    dirs = [Path(d) for d in dirs]
    out = Path(out) if out is not None else dirs[0]
    out.mkdir(parents=True, exist_ok=True)
    rep = build_report(collect(dirs), metric)

    import matplotlib

    matplotlib.use("Agg")
    for stale in ("error_by_model.png", "curves.png"):
        (out / stale).unlink(missing_ok=True)
    if rep.cells:
        plot_errors(rep, out / "error_by_model.png")
        plot_curves(rep, out / "curves.png")
    write_csvs(rep, out)
    (out / "report.md").write_text(render_markdown(rep, dirs, out))
    return rep


__all__ = ["Report", "build_report", "collect", "report"]
