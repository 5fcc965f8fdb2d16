"""Test error of trained runs against one controlled distortion (``stnlab-robustness``).

Each run's own test digits (the same digits as its fixed test set) are rotated by each angle
(or scaled by each factor) about the centre of their 28x28 frame, with nothing else changed,
and that centre put on the centre of the run's canvas (28x28 for R, 42x42 for RTS, ...).
Runs trained on cluttered MNIST take ``--kind clutter``: the same digits at the same places on
the run's canvas, among 0, 4, 8, 16 clutter patches (``clutter_digits``).
Multi-digit runs (MNIST sequences, SVHN) rotate or scale each image of their fixed test set
about its centre and count the sequence error (length and every digit right). Volumetric runs
make each test digit's slab at the volume's centre, turned about one axis (``axis``: z, the
default, turns it in its own plane; x and y tilt it) or scaled (``volume_digits``).
Other runs (addition, image folders, co-localisation) are refused in one line naming these.
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
from stnlab.data.distortions import Cluttered, Volumetric, similarity_warp
from stnlab.errors import StnlabError
from stnlab.report.tables import model_label
from stnlab.run.evaluate import find_checkpoint, load_run
from stnlab.run.train import build_data_and_module
from stnlab.tasks.sequence import sequence_correct, sequence_outputs

log = logging.getLogger(__name__)

DEFAULT_VALUES = {
    "rotation": [float(a) for a in range(0, 181, 15)],  # degrees
    "scale": [0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5],
    "clutter": [0.0, 4.0, 8.0, 16.0],  # patches on a cluttered canvas
}
XLABELS = {"rotation": "rotation (degrees)", "scale": "scale factor",
           "clutter": "clutter patches on the canvas"}
CLUTTER_SEED = 4321
AXES = ("x", "y", "z")
SUPPORTED = ("single-digit MNIST runs (R, RTS, P, E, none: rotation, scale), cluttered ones "
             "(clutter), multi-digit sequences (rotation, scale) and volumes (rotation, scale)")


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


def volume_digits(digits: torch.Tensor, recipe: Volumetric, angle: float = 0.0,
                  scale: float = 1.0, axis: str = "z") -> torch.Tensor:
    """``(N, 28, 28)`` uint8 digits -> ``(N, 1, D, H, W)`` volumes of ``recipe``'s canvas and
    slab: each slab centred, turned by ``angle`` degrees about ``axis`` and scaled by
    ``scale``."""
    n = len(digits)
    angles = torch.zeros(n, 3, dtype=torch.float64)
    angles[:, AXES.index(axis)] = float(angle)
    centred = Volumetric(canvas=recipe.canvas, thickness=recipe.thickness, translate=False)
    return centred.apply(digits.unsqueeze(1).float().div(255), {
        "angle": angles, "scale": torch.full((n,), float(scale), dtype=torch.float64),
        "position": torch.zeros(n, 3, dtype=torch.float64)})


def supported_kinds(data) -> tuple[str, ...]:
    """The ``--kind`` values a run on ``data`` supports (none: no curve for it)."""
    task, dims = getattr(data, "task", "classification"), tuple(data.dims)
    name = getattr(data, "distortion_name", "")
    if task == "sequence":
        return ("rotation", "scale")
    if task != "classification" or not hasattr(data, "test_digits") or dims[0] != 1:
        return ()
    if name == "cluttered":
        return ("clutter",)
    if len(dims) == 4 or (len(dims) == 3 and dims[1] == dims[2] and name != "addition"):
        return ("rotation", "scale")
    return ()


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


@torch.no_grad()
def sequence_curve(net: torch.nn.Module, batches, kind: str,
                   values: Sequence[float]) -> list[float]:
    """Sequence error (fraction) of ``net`` on ``batches`` of ``(images, targets)``, each
    image rotated (``kind`` rotation, degrees) or scaled about its centre by each value."""
    net.eval()
    wrong, total = [0] * len(values), 0
    for x, y in batches:
        total += len(y)
        for i, v in enumerate(values):
            n = len(x)
            angle = torch.full((n,), float(v if kind == "rotation" else 0.0), dtype=torch.float64)
            scale = torch.full((n,), float(v if kind == "scale" else 1.0), dtype=torch.float64)
            seq = sequence_correct(*sequence_outputs(net(similarity_warp(
                x, angle, scale, tuple(x.shape[2:])))), y)["seq"]
            wrong[i] += int((seq == 0).sum())
    return [w / max(total, 1) for w in wrong]


@torch.no_grad()
def volume_curve(net: torch.nn.Module, digits: torch.Tensor, labels: torch.Tensor,
                 recipe: Volumetric, kind: str, values: Sequence[float], axis: str = "z",
                 batch_size: int = 250) -> list[float]:
    """Test error (fraction) of ``net`` on ``digits`` as volumes (``volume_digits``) at each
    value; made a batch at a time (a 32^3 volume is 128 KB)."""
    net.eval()
    errors = []
    for v in values:
        how = {"angle": v} if kind == "rotation" else {"scale": v}
        wrong = sum(int((net(volume_digits(d, recipe, axis=axis, **how)).argmax(1) != y).sum())
                    for d, y in zip(digits.split(batch_size), labels.split(batch_size),
                                    strict=True))
        errors.append(wrong / len(labels))
    return errors


def run_curve(run: str | Path, kind: str, values: Sequence[float],
              axis: str = "z") -> tuple[str, list[float]]:
    """The label ("ST-CNN Aff (RTS, seed 0)") and error curve of one run's best checkpoint;
    ``axis``: what volumes turn about."""
    ckpt = find_checkpoint(run)
    state, cfg = load_run(ckpt)
    data, module = build_data_and_module(cfg)
    name = getattr(data, "distortion_name", "") or type(data).__name__
    kinds = supported_kinds(data)
    if kind not in kinds:
        take = (f"it takes --kind {' or '.join(kinds)}" if kinds else
                f"robustness curves are for {SUPPORTED}")
        raise StnlabError(f"{ckpt}: --kind {kind} does not apply to {name} runs; {take}.")
    module.load_state_dict(state["state_dict"])
    label, _ = model_label({}, to_plain(cfg))
    label = f"{label} ({name}, seed {cfg.seed}{f', about {axis}' if len(data.dims) == 4 else ''})"
    if getattr(data, "task", "classification") == "sequence":
        data.setup("test")
        batches = (data.on_after_batch_transfer(b, 0) for b in data.test_dataloader())  # SVHN:
        errors = sequence_curve(module.net, batches, kind, values)  # uint8 made float there
    else:
        digits, labels = data.test_digits()
        if kind == "clutter":
            errors = [batched_error(module.net, x, labels)
                      for x in clutter_digits(digits, data.distortion.params(), values)]
        elif len(data.dims) == 4:
            errors = volume_curve(module.net, digits, labels, data.distortion, kind, values,
                                  axis)
        else:
            errors = error_curve(module.net, digits, labels, data.dims[-1], kind, values)
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
