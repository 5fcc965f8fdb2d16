"""Test error of trained runs against one controlled distortion (``stnlab-robustness``).

Each run's own test digits (the same digits as its fixed test set) are rotated by each angle
(or scaled by each factor) about the centre of their 28x28 frame, with nothing else changed,
and that centre put on the centre of the run's canvas (28x28 for R, 42x42 for RTS, ...).
Runs trained on cluttered MNIST take ``--kind clutter``: the same digits at the same places on
the run's canvas, among 0, 4, 8, 16 clutter patches (``clutter_digits``).
The curves of several runs share one plot: ``robustness_<kind>.png`` and
``robustness_<kind>.csv`` in ``--out``.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from stnlab.config import to_plain
from stnlab.data.digits import EVAL_CHUNK
from stnlab.data.distortions import Cluttered, similarity_warp
from stnlab.errors import StnlabError
from stnlab.report.tables import model_label
from stnlab.run.evaluate import find_checkpoint, load_run
from stnlab.run.train import build_data_and_module

log = logging.getLogger(__name__)

DEFAULT_VALUES = {
    "rotation": [float(a) for a in range(0, 181, 15)],  # degrees
    "scale": [0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5],
    "clutter": [0.0, 4.0, 8.0, 16.0],  # patches on a cluttered canvas
}
XLABELS = {"rotation": "rotation (degrees)", "scale": "scale factor",
           "clutter": "clutter patches on the canvas"}
CLUTTER_SEED = 4321


def warp_digits(digits: torch.Tensor, canvas: int, angle: float = 0.0,
                scale: float = 1.0) -> torch.Tensor:
    """``(N, 28, 28)`` uint8 digits -> ``(N, 1, canvas, canvas)``: each digit rotated by
    ``angle`` degrees and scaled by ``scale`` about the centre of its 28x28 frame, which lands
    on the canvas's centre (as the R distortion rotates, with no shift of its own)."""
    n = len(digits)
    return similarity_warp(digits.unsqueeze(1).float().div(255),
                           torch.full((n,), float(angle), dtype=torch.float64),
                           torch.full((n,), float(scale), dtype=torch.float64), (canvas, canvas))


def clutter_digits(digits: torch.Tensor, recipe: dict, counts: Sequence[float],
                   seed: int = CLUTTER_SEED) -> list[torch.Tensor]:
    """``(N, 28, 28)`` uint8 digits -> for each count, ``(N, 1, canvas, canvas)`` cluttered
    canvases with that many patches. Positions, patch sources and places are drawn once, for
    the largest count, and each count keeps the first patches: only the clutter changes."""
    recipe = {k: v for k, v in recipe.items() if k != "name"}
    most = Cluttered(**{**recipe, "num_clutter": int(max(counts))})
    gen = torch.Generator().manual_seed(seed)
    x = digits.unsqueeze(1).float().div(255)
    out: list[list[torch.Tensor]] = [[] for _ in counts]
    for chunk in x.split(EVAL_CHUNK):
        params = most.sample_params(len(chunk), gen)
        for i, n in enumerate(counts):
            n = int(n)
            part = {"position": params["position"], **{k: params[k][:, :n]
                                                      for k in ("source", "crop", "places")}}
            out[i].append(Cluttered(**{**recipe, "num_clutter": n}).apply(chunk, part))
    return [torch.cat(images) for images in out]


@torch.no_grad()
def error_curve(net: torch.nn.Module, digits: torch.Tensor, labels: torch.Tensor, canvas: int,
                kind: str, values: Sequence[float], batch_size: int = 500) -> list[float]:
    """Test error (fraction) of ``net`` at each value of the ``kind`` distortion."""
    net.eval()
    errors = []
    for v in values:
        x = warp_digits(digits, canvas, **({"angle": v} if kind == "rotation" else {"scale": v}))
        errors.append(batched_error(net, x, labels, batch_size))
    return errors


@torch.no_grad()
def batched_error(net: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor,
                  batch_size: int = 500) -> float:
    """The share of ``x`` that ``net`` misclassifies."""
    net.eval()
    wrong = sum(int((net(xb).argmax(1) != yb).sum())
                for xb, yb in zip(x.split(batch_size), labels.split(batch_size), strict=True))
    return wrong / len(labels)


def run_curve(run: str | Path, kind: str, values: Sequence[float]) -> tuple[str, list[float]]:
    """The label ("ST-CNN Aff (RTS, seed 0)") and error curve of one run's best checkpoint."""
    ckpt = find_checkpoint(run)
    state, cfg = load_run(ckpt)
    data, module = build_data_and_module(cfg)
    module.load_state_dict(state["state_dict"])
    channels, height, width = data.dims
    if kind == "clutter":
        if data.distortion_name != "cluttered":
            raise StnlabError(f"{ckpt}: --kind clutter needs a run trained on cluttered MNIST, "
                              f"not {data.distortion_name}; use --kind rotation or scale.")
    elif channels != 1 or height != width or data.distortion_name in ("cluttered", "addition"):
        raise StnlabError(f"{ckpt}: robustness curves need a single-digit, single-channel task "
                          f"on a square canvas (R, RTS, P, E, none), not {data.distortion_name}; "
                          "cluttered runs take --kind clutter.")
    digits, labels = data.test_digits()
    label, _ = model_label({}, to_plain(cfg))
    label = f"{label} ({data.distortion_name}, seed {cfg.seed})"
    if kind == "clutter":
        errors = [batched_error(module.net, x, labels)
                  for x in clutter_digits(digits, data.distortion.params(), values)]
    else:
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
    ax.set_xlabel(XLABELS[kind])
    ax.set_ylabel("test error (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.set_title(f"Test error against {kind} of the test digits")
    ax.legend(fontsize=8)
    fig.savefig(png_path, dpi=120)
    return csv_path, png_path
