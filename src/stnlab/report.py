"""``stnlab-report``: turn one or more sweep directories into the paper-style table and plots.

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

import argparse
import csv
import json
import math
import os
import statistics
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from stnlab.paper import CITATION, paper_error

# The canonical names of stnlab.data.distortions.DISTORTIONS, in the paper's order (kept here,
# not imported, so that the reporter does not load torch and Lightning), and their aliases.
DISTORTION_ORDER = ("none", "R", "RTS", "P", "E", "cluttered", "addition")
DISTORTION_ALIASES = {"t": "cluttered", "tc": "cluttered"}

TRANSFORM_ABBREV = {"translation": "T", "attention": "Att", "similarity": "Sim", "affine": "Aff",
                    "projective": "Proj", "tps": "TPS"}
TRANSFORM_ORDER = ("translation", "attention", "similarity", "affine", "projective", "tps")

# Overrides that are axes of the table (read from results.json) or do not change the result.
AXIS_KEYS = {"seed", "model", "model.transform", "model.num_parallel", "model.st_at",
             "data.distortion"}
BOOKKEEPING_KEYS = {"trainer", "logger", "callbacks", "hydra", "task_name", "data.data_dir",
                    "data.num_workers", "data.cache", "trainer.devices", "trainer.accelerator",
                    "trainer.strategy", "trainer.num_nodes", "trainer.enable_progress_bar"}
BOOKKEEPING_PREFIXES = ("paths.", "hydra.", "hydra/", "logger.", "callbacks.")

STATUS_OK, STATUS_FAILED, STATUS_MISSING, STATUS_NO_METRIC = "ok", "failed", "missing", "no metric"


# --------------------------------------------------------------------------------------------
# Collecting jobs
# --------------------------------------------------------------------------------------------

@dataclass
class Job:
    """One job of a sweep: finished (results present), failed, or missing."""

    path: Path | None  # None for a job that was expected but has no directory
    sweep: Path  # the directory given on the command line
    status: str = STATUS_OK
    num: int | None = None  # Hydra's job number within its multirun
    overrides: list[str] = field(default_factory=list)
    results: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    error: str = ""
    multirun: Path | None = None  # the multirun directory holding the job, if any
    variant: str = ""
    distortion: str = ""
    value: float | None = None  # the report metric, in display units (% for acc/error)

    @property
    def name(self) -> str:
        if self.path is None:
            return f"#{self.num} (no directory)"
        rel = os.path.relpath(self.path, self.sweep)
        return self.path.name if rel == "." else rel

    @property
    def seed(self) -> Any:
        return (self.results or {}).get("seed", (self.config or {}).get("seed"))


def _read_yaml(path: Path) -> Any:
    try:
        with open(path) as f:
            return yaml.safe_load(f)
    except (OSError, yaml.YAMLError):
        return None


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def find_job_dirs(root: Path) -> tuple[list[Path], list[Path]]:
    """Directories under ``root`` (itself included) that hold a job (``.hydra/`` or
    results.json), and those that hold a multirun (``multirun.yaml``).

    Walks the whole tree: an override value with a ``/`` in it nests a job's directory, and
    a directory of several multiruns holds them all.
    """
    jobs, multiruns = [], []
    for dirpath, dirnames, filenames in os.walk(root):
        if "multirun.yaml" in filenames:
            multiruns.append(Path(dirpath))
        if ".hydra" in dirnames or "results.json" in filenames:
            jobs.append(Path(dirpath))
            dirnames.clear()  # a job's own subfolders hold no jobs
        else:
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
    return sorted(jobs), sorted(multiruns)


def last_error(job_dir: Path, max_len: int = 240) -> str:
    """The last ERROR record of the job's log files (Hydra writes ``<job name>.log``), its
    continuation lines joined; else the last ``SomethingError: ...`` line."""
    records: list[list[str]] = []
    for log in sorted(job_dir.glob("*.log")):
        try:
            text = log.read_text(errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("[") or not records:
                records.append([line.strip()])
            elif line.strip():
                records[-1].append(line.strip())
    errors = [r for r in records if "][ERROR]" in r[0]]
    if errors:
        msg = " ".join(errors[-1])
        msg = msg.split("] - ", 1)[1] if "] - " in msg else msg
    else:
        lines = [ln for r in records for ln in r
                 if ln.split(":", 1)[0].endswith(("Error", "Exception"))]
        msg = lines[-1] if lines else ""
    return msg if len(msg) <= max_len else msg[: max_len - 3] + "..."


def load_job(job_dir: Path, sweep: Path) -> Job:
    job = Job(path=job_dir, sweep=sweep)
    job.overrides = [str(o) for o in (_read_yaml(job_dir / ".hydra" / "overrides.yaml") or [])]
    hydra_cfg = _read_yaml(job_dir / ".hydra" / "hydra.yaml") or {}
    num = ((hydra_cfg.get("hydra") or {}).get("job") or {}).get("num")
    if num is None and job_dir.name.split("_", 1)[0].isdigit():
        num = int(job_dir.name.split("_", 1)[0])
    job.num = num if isinstance(num, int) else None
    job.config = (_read_yaml(job_dir / "config.yaml")
                  or _read_yaml(job_dir / ".hydra" / "config.yaml"))
    job.results = _read_json(job_dir / "results.json")
    if job.results is None:
        job.status = STATUS_FAILED
        job.error = last_error(job_dir) or "no results.json (failed, killed, or still running)"
    return job


def expected_overrides(sweep: Path) -> list[list[str]] | None:
    """The jobs a basic-sweeper multirun launches (Hydra's own enumeration), or None."""
    cfg = _read_yaml(sweep / "multirun.yaml")
    hydra_cfg = (cfg or {}).get("hydra") or {}
    sweeper = hydra_cfg.get("sweeper") or {}
    if not str(sweeper.get("_target_", "")).endswith("BasicSweeper"):
        return None
    try:
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
        from hydra.core.override_parser.overrides_parser import OverridesParser

        args = [f"{k}={v}" for k, v in (sweeper.get("params") or {}).items()]
        args += list((hydra_cfg.get("overrides") or {}).get("task") or [])
        parsed = OverridesParser.create().parse_overrides(args)
        (batch,) = BasicSweeper.split_arguments(parsed, None)
        return batch
    except Exception:  # glob() sweeps need a config loader; other sweepers: no enumeration
        return None


def collect(dirs: Iterable[Path]) -> list[Job]:
    """All jobs under ``dirs``: finished, failed, and (basic sweeper) never started."""
    jobs: list[Job] = []
    seen: set[Path] = set()
    for sweep in dirs:
        sweep = Path(sweep)
        if not sweep.is_dir():
            raise SystemExit(f"stnlab-report: not a directory: {sweep}")
        job_dirs, multiruns = find_job_dirs(sweep)
        found = [load_job(d, sweep) for d in job_dirs if d.resolve() not in seen]
        seen.update(j.path.resolve() for j in found)
        for job in found:  # the nearest multirun directory above the job
            above = [m for m in multiruns if job.path.is_relative_to(m)]
            job.multirun = max(above, key=lambda m: len(m.parts)) if above else None
        for multirun in multiruns:
            expected = expected_overrides(multirun)
            if expected is None:
                continue
            have = {j.num for j in found if j.multirun == multirun}
            where = "" if multirun == sweep else f" in {os.path.relpath(multirun, sweep)}"
            found += [Job(path=None, sweep=sweep, status=STATUS_MISSING, num=i, overrides=ov,
                          error=f"not started{where} (the sweep stopped, or is still running)",
                          multirun=multirun)
                      for i, ov in enumerate(expected) if i not in have]
        found.sort(key=lambda j: (str(j.multirun or j.path), -1 if j.num is None else j.num,
                                  str(j.path)))
        jobs += found
    return jobs


# --------------------------------------------------------------------------------------------
# Labels
# --------------------------------------------------------------------------------------------

def canonical_distortion(name: Any) -> str:
    if name is None:
        return "none"
    lookup = {d.lower(): d for d in DISTORTION_ORDER}
    key = str(name).lower()
    return DISTORTION_ALIASES.get(key) or lookup.get(key) or str(name)


def distortion_sort_key(name: str) -> tuple[int, str]:
    order = {d: i for i, d in enumerate(DISTORTION_ORDER)}
    return order.get(name, len(order)), name


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list | tuple) else [str(value)]


def model_label(results: dict[str, Any], config: dict[str, Any] | None) -> tuple[str, tuple]:
    """The row label ("CNN", "ST-CNN Aff", "2xST-FCN TPS", ...) and its sort key."""
    model_cfg = (config or {}).get("model") or {}
    model = results.get("model") or str(model_cfg.get("_target_", "?")).rsplit(".", 1)[-1]
    is_st = model.startswith("ST") and len(model) > 2
    backbone = model[2:] if is_st else model
    label = f"ST-{backbone}" if is_st else model
    parallel = int(model_cfg.get("num_parallel") or 1) if is_st else 1
    if parallel > 1:
        label = f"{parallel}x{label}"
    transform = results.get("transform") or model_cfg.get("transform")
    if is_st and transform:
        label += " " + TRANSFORM_ABBREV.get(str(transform), str(transform))
    st_at = _as_list(model_cfg.get("st_at")) if is_st else []
    if st_at and st_at != ["input"]:
        label += f" @{'+'.join(st_at)}"
    t_rank = TRANSFORM_ORDER.index(transform) if transform in TRANSFORM_ORDER else 99
    backbone_rank = {"FCN": 0, "CNN": 1}.get(backbone, 2)
    return label, (is_st, backbone_rank, backbone, parallel, t_rank, str(transform), st_at)


def _override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _is_bookkeeping(key: str) -> bool:
    return key in AXIS_KEYS or key in BOOKKEEPING_KEYS or key.startswith(BOOKKEEPING_PREFIXES)


def varying_overrides(jobs: Sequence[Job]) -> set[str]:
    """Override keys (beyond the table's axes and bookkeeping) whose values differ across jobs."""
    per_job = [{_override_key(o): o for o in j.overrides} for j in jobs]
    keys = {k for d in per_job for k in d if not _is_bookkeeping(k)}
    return {k for k in keys if len({d.get(k) for d in per_job}) > 1}


def assign_variants(jobs: Sequence[Job]) -> dict[str, tuple]:
    """Set ``variant`` and ``distortion`` on finished jobs; returns variant -> sort key."""
    done = [j for j in jobs if j.results is not None]
    extra_keys = varying_overrides(done)
    sort_keys: dict[str, tuple] = {}
    for job in done:
        label, key = model_label(job.results, job.config)
        extras = sorted(o for o in job.overrides if _override_key(o) in extra_keys)
        if extras:
            label += f" [{', '.join(extras)}]"
        job.variant = label
        sort_keys[label] = (*key, extras)
        job.distortion = canonical_distortion(
            job.results.get("distortion") or (job.results.get("data") or {}).get("distortion"))
    return sort_keys


# --------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------

def metric_scale(metric: str) -> tuple[float, str]:
    """Accuracies and errors are fractions in results.json: shown in %."""
    last = metric.rsplit("/", 1)[-1]
    return (100.0, "%") if last.startswith(("acc", "error")) else (1.0, "")


@dataclass
class Cell:
    variant: str
    distortion: str
    jobs: list[Job]
    values: list[float]
    paper: float | None

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values) if self.values else math.nan

    @property
    def std(self) -> float:
        """Sample standard deviation over seeds (n - 1); NaN for a single seed."""
        return statistics.stdev(self.values) if self.n > 1 else math.nan

    @property
    def seeds(self) -> list[Any]:
        return [j.seed for j in self.jobs]


@dataclass
class Report:
    jobs: list[Job]
    metric: str
    rows: list[str]
    columns: list[str]
    cells: dict[tuple[str, str], Cell]
    notes: list[str]


def build_report(jobs: list[Job], metric: str) -> Report:
    scale, _ = metric_scale(metric)
    sort_keys = assign_variants(jobs)
    cells: dict[tuple[str, str], Cell] = {}
    for job in jobs:
        if job.results is None:
            continue
        value = job.results.get(metric)
        if not isinstance(value, int | float) or isinstance(value, bool) \
                or not math.isfinite(value):
            job.status = STATUS_NO_METRIC
            job.error = f"results.json has no finite {metric} ({value!r})"
            continue
        job.value = float(value) * scale
        key = (job.variant, job.distortion)
        if key not in cells:
            paper = paper_error(*key) if metric == "test/error" else None
            cells[key] = Cell(job.variant, job.distortion, [], [], paper)
        cells[key].jobs.append(job)
        cells[key].values.append(job.value)
    rows = sorted({v for v, _ in cells}, key=lambda v: sort_keys[v])
    columns = sorted({d for _, d in cells}, key=distortion_sort_key)
    notes = []
    for cell in cells.values():
        repeated = sorted(str(s) for s, c in Counter(map(str, cell.seeds)).items() if c > 1)
        if repeated:
            notes.append(f"{cell.variant} / {cell.distortion}: seed(s) {', '.join(repeated)} "
                         "appear more than once (reruns?); every run is counted in n.")
    return Report(jobs, metric, rows, columns, cells, notes)


def _fmt(x: float, unit: str) -> str:
    if math.isnan(x):
        return "nan"
    return f"{x:.2f}" if unit == "%" else f"{x:.4g}"


def format_cell(cell: Cell | None, unit: str) -> str:
    if cell is None:
        return "—"
    text = _fmt(cell.mean, unit)
    if cell.n > 1:
        text += f" ± {_fmt(cell.std, unit)}"
    text += f" (n={cell.n})"
    if cell.paper is not None:
        text += f" [paper {cell.paper:g}]"
    return text


def _md_table(header: Sequence[str], rows: Iterable[Sequence[Any]], align: str = "") -> str:
    def esc(x: Any) -> str:
        return str(x).replace("|", "\\|").replace("\n", " ")

    align = align or "l" * len(header)
    marks = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(esc(h) for h in header) + " |", "| " + " | ".join(marks) + " |"]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _range(values: Iterable[Any]) -> str:
    vals = sorted({v for v in values if v is not None})
    if not vals:
        return "?"
    return f"{vals[0]:,}" if len(vals) == 1 else f"{vals[0]:,}–{vals[-1]:,}"


def data_summary(done: Sequence[Job]) -> list[str]:
    """One line per data source and split sizes seen, with job counts."""
    counts: Counter = Counter()
    for job in done:
        data = job.results.get("data") or {}
        sizes = data.get("sizes") or {}
        counts[(str(data.get("source", "?")), sizes.get("train"), sizes.get("val"),
                sizes.get("test"))] += 1
    lines = []
    for (source, tr, va, te), n in sorted(counts.items(), key=lambda kv: -kv[1]):
        sizes = " / ".join(f"{k} {v:,}" for k, v in (("train", tr), ("val", va), ("test", te))
                           if isinstance(v, int))
        lines.append(f"- source `{source}`: {sizes or 'sizes unknown'} — {n} job(s)")
    if len({k[0] for k in counts}) > 1:
        lines.append("- **WARNING: jobs used different data sources; their cells are not "
                     "comparable.**")
    return lines


def render_markdown(rep: Report, dirs: Sequence[Path], out: Path) -> str:
    scale, unit = metric_scale(rep.metric)
    done = [j for j in rep.jobs if j.value is not None]
    problems = [j for j in rep.jobs if j.value is None]
    md = ["# stnlab sweep report", ""]
    md += [f"- sweep: `{d}`" for d in dirs]
    md.append(f"- jobs: {len(rep.jobs)} — {len(done)} finished, "
              f"{sum(j.status == STATUS_FAILED for j in rep.jobs)} failed, "
              f"{sum(j.status == STATUS_MISSING for j in rep.jobs)} missing"
              + (f", {sum(j.status == STATUS_NO_METRIC for j in rep.jobs)} without "
                 f"{rep.metric}" if any(j.status == STATUS_NO_METRIC for j in rep.jobs) else ""))
    md += ["", f"## {rep.metric}{f' ({unit})' if unit else ''}", ""]
    if rep.rows:
        md.append("Mean ± sample standard deviation over seeds, n = number of finished jobs."
                  + (f" `[paper x]`: the paper's figure ({CITATION}), **on full MNIST with the"
                     " full 150k-iteration schedule** — a reference, not a target for short or"
                     " sample-data runs." if rep.metric == "test/error" else ""))
        md.append("")
        md.append(_md_table(["model", *rep.columns],
                            [[r, *(format_cell(rep.cells.get((r, c)), unit)
                                   for c in rep.columns)] for r in rep.rows],
                            "l" + "r" * len(rep.columns)))
    else:
        md.append("No finished job: nothing to tabulate.")
    plots = [p for p in ("error_by_model.png", "curves.png") if (out / p).exists()]
    if plots:
        md += [""] + [f"![{p}]({p})" for p in plots]
    if done:
        md += ["", "## Data and training length", ""]
        md += data_summary(done)
        md.append(f"- epochs: {_range(j.results.get('epochs') for j in done)}; optimiser "
                  f"steps: {_range(j.results.get('global_step') for j in done)}")
        md += ["", "## Models: parameters and fit time", ""]
        by_row: dict[str, list[Job]] = defaultdict(list)
        for j in done:
            by_row[j.variant].append(j)
        table = []
        for r in rep.rows:
            params: dict[Any, list[str]] = defaultdict(list)
            for j in sorted(by_row[r], key=lambda j: distortion_sort_key(j.distortion)):
                if j.distortion not in params[j.results.get("num_params")]:
                    params[j.results.get("num_params")].append(j.distortion)
            if len(params) == 1:
                ptxt = f"{next(iter(params)):,}" if next(iter(params)) is not None else "?"
            else:
                ptxt = " / ".join(f"{p:,} ({', '.join(sorted(ds, key=distortion_sort_key))})"
                                  for p, ds in params.items() if p is not None)
            times = [j.results["fit_time_s"] for j in by_row[r]
                     if isinstance(j.results.get("fit_time_s"), int | float)]
            table.append([r, ptxt, f"{statistics.fmean(times):.1f}" if times else "?",
                          len(by_row[r])])
        md.append(_md_table(["model", "parameters", "mean fit time (s)", "jobs"], table, "lrrr"))
    if problems:
        md += ["", "## Failed and missing jobs", ""]
        md.append(_md_table(["job", "status", "overrides", "reason"],
                            [[j.name, j.status.upper(), " ".join(j.overrides) or "—",
                              j.error or "—"] for j in problems]))
    if rep.notes:
        md += ["", "## Notes", ""] + [f"- {n}" for n in rep.notes]
    if done:
        md += ["", "## Per job", ""]
        key = {r: i for i, r in enumerate(rep.rows)}
        ordered = sorted(done, key=lambda j: (key[j.variant], distortion_sort_key(j.distortion),
                                              str(j.seed)))

        def pct(j: Job, k: str) -> str:
            v = j.results.get(k)
            return f"{100 * v:.2f}" if isinstance(v, int | float) else "—"

        md.append(_md_table(
            ["model", "distortion", "seed", f"{rep.metric}{f' {unit}' if unit else ''}",
             "test/acc %", "val/acc_best %", "epochs", "steps", "fit time (s)", "job"],
            [[j.variant, j.distortion, j.seed, _fmt(j.value, unit), pct(j, "test/acc"),
              pct(j, "val/acc_best"), j.results.get("epochs", "—"),
              j.results.get("global_step", "—"), j.results.get("fit_time_s", "—"), j.name]
             for j in ordered], "lllrrrrrrl"))
    return "\n".join(md) + "\n"


def write_csvs(rep: Report, out: Path) -> None:
    with open(out / "report.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", "distortion", "metric", "n", "mean", "std", "min", "max", "seeds",
                    "paper_test_error_pct", "num_params", "mean_fit_time_s"])
        for r in rep.rows:
            for c in rep.columns:
                cell = rep.cells.get((r, c))
                if cell is None:
                    continue
                params = sorted({j.results.get("num_params") for j in cell.jobs},
                                key=lambda p: (p is None, p))
                times = [j.results["fit_time_s"] for j in cell.jobs
                         if isinstance(j.results.get("fit_time_s"), int | float)]
                w.writerow([r, c, rep.metric, cell.n, f"{cell.mean:.6g}",
                            "" if math.isnan(cell.std) else f"{cell.std:.6g}",
                            f"{min(cell.values):.6g}", f"{max(cell.values):.6g}",
                            " ".join(map(str, cell.seeds)),
                            "" if cell.paper is None else cell.paper,
                            " ".join(map(str, params)),
                            f"{statistics.fmean(times):.1f}" if times else ""])
    with open(out / "jobs.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["status", "model", "distortion", "seed", rep.metric, "test/acc",
                    "val/acc_best", "num_params", "epochs", "global_step", "fit_time_s",
                    "data_source", "job", "overrides", "reason"])
        for j in rep.jobs:
            res = j.results or {}
            w.writerow([j.status, j.variant, j.distortion, j.seed if j.results else "",
                        "" if j.value is None else f"{j.value:.6g}", res.get("test/acc", ""),
                        res.get("val/acc_best", ""), res.get("num_params", ""),
                        res.get("epochs", ""), res.get("global_step", ""),
                        res.get("fit_time_s", ""), (res.get("data") or {}).get("source", ""),
                        j.name, " ".join(j.overrides), j.error])


# --------------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------------

def _colours(rows: Sequence[str]) -> dict[str, Any]:
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if len(rows) <= 10 else "tab20"]
    return {r: cmap(i % cmap.N) for i, r in enumerate(rows)}


def plot_errors(rep: Report, path: Path) -> None:
    """Grouped bars: one group per distortion, one bar per model; std error bars, seeds as dots,
    the paper's figure as a black diamond."""
    import matplotlib.pyplot as plt

    _, unit = metric_scale(rep.metric)
    colours = _colours(rep.rows)
    n_rows, n_cols = len(rep.rows), len(rep.columns)
    width = 0.8 / max(n_rows, 1)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 + n_cols * (0.5 + 0.28 * n_rows)), 4.2))
    paper_shown = False
    for i, r in enumerate(rep.rows):
        for k, c in enumerate(rep.columns):
            cell = rep.cells.get((r, c))
            if cell is None:
                continue
            x = k - 0.4 + width * (i + 0.5)
            err = None if math.isnan(cell.std) else cell.std
            ax.bar(x, cell.mean, width * 0.9, yerr=err, capsize=2, color=colours[r],
                   label=r if k == min(kk for kk, cc in enumerate(rep.columns)
                                       if (r, cc) in rep.cells) else None,
                   error_kw={"elinewidth": 0.8})
            ax.scatter([x] * cell.n, cell.values, s=6, color="0.25", zorder=3, linewidths=0)
            if cell.paper is not None:
                ax.scatter([x], [cell.paper], marker="D", s=22, color="black", zorder=4,
                           label=None if paper_shown else "paper (full MNIST)")
                paper_shown = True
    ax.set_xticks(range(n_cols), rep.columns)
    ax.set_xlabel("distortion")
    ax.set_ylabel(f"{rep.metric}{f' ({unit})' if unit else ''}")
    ax.set_ylim(bottom=0)
    ax.set_title(f"{rep.metric}: mean ± std over seeds (dots: single seeds)", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def read_curve(job_dir: Path, column: str = "val/acc") -> tuple[list[int], list[float]]:
    """``column`` per epoch (the last value logged in each epoch) from ``csv/metrics.csv``."""
    path = job_dir / "csv" / "metrics.csv"
    per_epoch: dict[int, float] = {}
    try:
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                value, epoch = row.get(column), row.get("epoch")
                if value and epoch:
                    try:
                        per_epoch[int(float(epoch))] = float(value)
                    except ValueError:
                        continue
    except OSError:
        return [], []
    epochs = sorted(per_epoch)
    return epochs, [per_epoch[e] for e in epochs]


def plot_curves(rep: Report, path: Path, column: str = "val/acc") -> bool:
    """One panel per distortion, one line per job coloured by model. False if no job logged
    ``column`` to csv/metrics.csv (then nothing is written)."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    curves = []
    for j in rep.jobs:
        if j.value is not None and j.path is not None:
            epochs, values = read_curve(j.path, column)
            if epochs:
                curves.append((j, epochs, values))
    if not curves:
        return False
    colours = _colours(rep.rows)
    columns = [c for c in rep.columns if any(j.distortion == c for j, _, _ in curves)]
    n_cols = len(columns) if len(columns) <= 3 else 2 if len(columns) == 4 else 3
    n_rows = math.ceil(len(columns) / n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.5 + 3.6 * n_cols, 0.6 + 3.0 * n_rows),
                             sharey=True, squeeze=False)
    axes = list(axes.flat)
    for ax in axes[len(columns):]:
        ax.set_visible(False)
    scale, unit = metric_scale(column)
    labelled = set()
    for ax, c in zip(axes, columns, strict=False):
        for j, epochs, values in curves:
            if j.distortion != c:
                continue
            single = len(epochs) == 1
            ax.plot(epochs, [v * scale for v in values], color=colours[j.variant], lw=1.2,
                    alpha=0.8, marker="o" if single else None, ms=3,
                    label=None if j.variant in labelled else j.variant)
            labelled.add(j.variant)
        ax.set_title(c, fontsize=10)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    for k in range(0, len(columns), n_cols):
        axes[k].set_ylabel(f"{column}{f' ({unit})' if unit else ''}")
    handles, labels = [], []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.append(h)
            labels.append(lab)
    order = sorted(range(len(labels)), key=lambda i: rep.rows.index(labels[i]))
    fig.legend([handles[i] for i in order], [labels[i] for i in order], fontsize=7,
               loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.suptitle(f"{column} per epoch, one line per job", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return True


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------

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
