"""The paper-style table of a sweep: row labels, cells (mean ± std over seeds, the paper's
figure beside), markdown and CSV."""

from __future__ import annotations

import csv
import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stnlab.report.collect import STATUS_FAILED, STATUS_MISSING, STATUS_NO_METRIC, Job
from stnlab.report.paper import (
    CITATION,
    SEQUENCE_DATA,
    paper_coloc_iou,
    paper_error,
    paper_seq_error,
)

# The canonical names of stnlab.data.distortions.DISTORTIONS, in the paper's order (kept here,
# not imported, so that the reporter does not load torch and Lightning), and their aliases.
DISTORTION_ORDER = ("none", "R", "RTS", "P", "E", "cluttered", "addition", "multidigit", "svhn",
                    "coloc_translated", "coloc_cluttered")
DISTORTION_ALIASES = {"t": "cluttered", "tc": "cluttered"}

TRANSFORM_ABBREV = {"translation": "T", "attention": "Att", "crop": "Crop", "similarity": "Sim",
                    "affine": "Aff", "projective": "Proj", "tps": "TPS"}
TRANSFORM_ORDER = ("translation", "attention", "crop", "similarity", "affine", "projective",
                   "tps")

# Overrides that are axes of the table (read from results.json) or do not change the result.
AXIS_KEYS = {"seed", "model", "model.transform", "model.num_parallel", "model.split_channels",
             "model.st_at", "data.distortion"}
BOOKKEEPING_KEYS = {"trainer", "logger", "callbacks", "hydra", "task_name", "data.data_dir",
                    "data.num_workers", "data.cache", "trainer.devices", "trainer.accelerator",
                    "trainer.strategy", "trainer.num_nodes", "trainer.enable_progress_bar"}
BOOKKEEPING_PREFIXES = ("paths.", "hydra.", "hydra/", "logger.", "callbacks.")


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


# The sequence models (stnlab.models.sequence) by the paper's SVHN row names.
SEQUENCE_LABELS = {"SequenceCNN": "CNN", "SequenceSTCNNSingle": "ST-CNN Single",
                   "SequenceSTCNNMulti": "ST-CNN Multi"}


def model_label(results: dict[str, Any], config: dict[str, Any] | None) -> tuple[str, tuple]:
    """The row label ("CNN", "ST-CNN Aff", "2xST-FCN TPS", ...) and its sort key."""
    model_cfg = (config or {}).get("model") or {}
    model = results.get("model") or str(model_cfg.get("_target_", "?")).rsplit(".", 1)[-1]
    if model in SEQUENCE_LABELS:
        label = SEQUENCE_LABELS[model]
        transform = results.get("transform") or model_cfg.get("transform")
        if label != "CNN" and transform not in (None, "affine"):
            label += " " + TRANSFORM_ABBREV.get(str(transform), str(transform))
        rank = list(SEQUENCE_LABELS.values()).index(SEQUENCE_LABELS[model])
        return label, (label != "CNN", 1, "CNN", 1, False, rank, str(transform), [])
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
    split = parallel > 1 and bool(model_cfg.get("split_channels"))
    if split:
        label += ", a channel each"
    t_rank = TRANSFORM_ORDER.index(transform) if transform in TRANSFORM_ORDER else 99
    backbone_rank = {"FCN": 0, "CNN": 1}.get(backbone, 2)
    return label, (is_st, backbone_rank, backbone, parallel, split, t_rank, str(transform),
                   st_at)


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


def metric_scale(metric: str) -> tuple[float, str]:
    """Accuracies and errors are fractions in results.json: shown in %."""
    last = metric.rsplit("/", 1)[-1]
    return (100.0, "%") if last.startswith(("acc", "error", "seq_", "digit_acc", "length_acc",
                                            "iou_0")) \
        else (1.0, "")


@dataclass
class Cell:
    variant: str
    distortion: str
    jobs: list[Job]
    values: list[float]
    paper: float | str | None  # a str: a range of figures ("75-93")

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
            paper = (paper_seq_error(*key) if metric == "test/seq_error"
                     or (metric == "test/error" and key[1] in SEQUENCE_DATA)
                     else paper_coloc_iou(key[1]) if metric == "test/iou_0.5"
                     else paper_error(*key) if metric == "test/error" else None)
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
        text += f" [paper {cell.paper if isinstance(cell.paper, str) else f'{cell.paper:g}'}]"
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
        if "multidigit" in rep.columns and any(c.paper is not None for c in rep.cells.values()):
            md.append("**multidigit: `[paper x]` is the paper's SVHN 64px sequence error (real "
                      "house numbers), a DIFFERENT data set from these MNIST digit sequences.**")
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
