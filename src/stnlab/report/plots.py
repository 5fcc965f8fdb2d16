"""The sweep's plots: error by model (bars, the paper's figure as a marker) and validation
curves per job."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stnlab.report.tables import Report, metric_scale


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
