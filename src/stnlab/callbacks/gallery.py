"""A gallery of what each spatial transformer does to a fixed batch of validation images."""

from __future__ import annotations

import logging
from pathlib import Path

import pytorch_lightning as pl
import torch
from matplotlib.figure import Figure

from stnlab.data.distortions.volumetric import orthogonal_projections
from stnlab.spatial import spatial_transformers
from stnlab.spatial.region import sampled_region

log = logging.getLogger(__name__)


def grid_outline(grid: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The border of a (H', W', 2) sampling grid in the input's pixel coordinates, as (N, 2)."""
    border = torch.cat([grid[0, :], grid[1:, -1], grid[-1, :-1].flip(0), grid[:-1, 0].flip(0)])
    # normalised -> pixel centres, with the library's align_corners=False convention
    x = ((border[:, 0] + 1) * width - 1) / 2
    y = ((border[:, 1] + 1) * height - 1) / 2
    return torch.stack([x, y], dim=1)


class STGallery(pl.Callback):
    """Every ``every_n_epochs``, draw inputs beside each transformer's output, grid outlined.

    Writes ``<dirpath>/epoch_NNN.png`` and logs the figure to TensorBoard and W&B loggers. Every
    transformer is drawn: those on the image by their output (each channel), deeper ones by
    their mean feature map and their region outlined on the image (``draw``).
    """

    def __init__(self, dirpath: str = "gallery", every_n_epochs: int = 5, num_images: int = 8):
        self.dirpath = Path(dirpath)
        self.every_n_epochs = every_n_epochs
        self.num_images = num_images

    def _batch(self, trainer: pl.Trainer) -> tuple[torch.Tensor, torch.Tensor | None] | None:
        """The first validation inputs and their boxes (``fixed_batch``); None without data."""
        fixed_batch = getattr(trainer.datamodule, "fixed_batch", None)
        if fixed_batch is None:
            return None
        images, boxes = fixed_batch("val", self.num_images)
        return (images, boxes) if len(images) else None

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch
        last = trainer.max_epochs is not None and epoch == trainer.max_epochs - 1
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        if epoch % self.every_n_epochs and not last:
            return
        batch = self._batch(trainer)
        if batch is None:
            return
        images, boxes = batch
        figure = self.render(pl_module, images.to(pl_module.device), boxes)
        if figure is None:
            return
        self.dirpath.mkdir(parents=True, exist_ok=True)
        path = self.dirpath / f"epoch_{epoch:03d}.png"
        figure.savefig(path, dpi=80)
        for logger in trainer.loggers:
            name = type(logger).__name__
            if name == "TensorBoardLogger":
                logger.experiment.add_figure("st/gallery", figure, global_step=trainer.global_step)
            elif name == "WandbLogger":
                logger.log_image("st/gallery", [str(path)], step=trainer.global_step)

    def render(self, pl_module, images: torch.Tensor,
               boxes: torch.Tensor | None = None) -> Figure | None:
        """The gallery of ``pl_module``'s transformers on ``images`` (None without any)."""
        sts = spatial_transformers(pl_module)
        if not sts:
            return None
        captured: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        hooks = [st.register_forward_hook(
            lambda m, args, out, i=i: captured.__setitem__(i, (args[0].detach(), out.detach())))
            for i, st in enumerate(sts)]
        was_training = pl_module.training
        pl_module.eval()
        try:
            with torch.no_grad():
                pl_module(images)
        finally:
            pl_module.train(was_training)
            for h in hooks:
                h.remove()
        return self.draw(sts, captured, boxes, images)

    def draw(self, sts, captured, boxes: torch.Tensor | None = None,
             images: torch.Tensor | None = None) -> Figure:
        """Each input channel (every transformer's sampled region outlined, the digit's box
        dashed where ``boxes`` are known) beside each transformer's output.

        A transformer on the image shows its output, one column a channel (MNIST addition: does
        each attend to one digit?). A deeper one (on a feature map) shows the channel mean of
        its output, and its region on the image: its outline mapped back through the
        transformers before it (``series_regions``; conv and pooling keep the normalised frame).
        """
        # A bare Figure (no pyplot): draws off-screen without touching the process's backend,
        # so importing stnlab does not switch a notebook's inline plots off.
        u0 = images if images is not None else captured[0][0]
        if u0.dim() == 5:
            return self.draw_volumes(sts, captured, u0)
        n, channels, height, width = u0.shape
        sees = [image_channels(captured[i][0], u0) for i in range(len(sts))]
        on_image = [s is not None for s in sees]
        regions = series_regions(sts, on_image)
        colors = [f"C{i % 10}" for i in range(len(sts))]
        columns = [(f"input ch {c}" if channels > 1 else "input", "black", u0[:, c])
                   for c in range(channels)]
        for i in range(len(sts)):
            v = captured[i][1]
            name = f"ST {i}" if len(sts) > 1 else "ST output"
            if sees[i] is not None:
                columns += [(f"{name} ch {c}" if channels > 1 else name, colors[i], v[:, k])
                            for k, c in enumerate(sees[i])]
            else:
                columns.append((f"{name} (mean map)", colors[i], v.float().mean(1)))
        fig, axes = self._columns(columns, n, 1.6)
        # outlines in the columns' units: an image's height is 1, rows are ROW_STEP apart
        sx, sy = 1.0 / height, 1.0 / height
        for c in range(channels):
            ax = axes[c]
            for row in range(n):
                dy = row * ROW_STEP
                if boxes is not None:
                    x0, y0, x1, y1 = (float(v) for v in boxes[row])
                    xs = [x0 - .5, x1 + .5, x1 + .5, x0 - .5, x0 - .5]
                    ys = [y0 - .5, y0 - .5, y1 + .5, y1 + .5, y0 - .5]
                    ax.plot([(x + .5) * sx for x in xs], [dy + (y + .5) * sy for y in ys],
                            "--", color="yellow", lw=0.8)
                for i, poly in enumerate(regions):
                    if poly is not None and (sees[i] is None or c in sees[i]):
                        pts = to_pixels(torch.cat([poly[row], poly[row, :1]]).cpu(), height,
                                        width)
                        ax.plot((pts[:, 0] + .5) * sx, dy + (pts[:, 1] + .5) * sy, lw=1,
                                color=colors[i])
        return fig

    @staticmethod
    def _columns(columns, n: int, size: float) -> tuple[Figure, list]:
        """One axes a column (title, colour, images ``(n, H, W)``), its images top to bottom,
        each 1 unit high (so the rows of all columns line up, whatever their pixel sizes): one
        axes a column, not one an image, keeps drawing cheap (~10x faster)."""
        margin = 0.25  # sampled regions may reach past the frame
        width = columns[0][2].shape[2] / columns[0][2].shape[1] + 2 * margin
        height = n * ROW_STEP - (ROW_STEP - 1) + 2 * margin
        fig_width, fig_height = size * len(columns), size * height / width + TITLE_INCHES
        fig = Figure(figsize=(fig_width, fig_height))
        # a fixed layout (each column's title in the strip on top), not tight_layout: that
        # draws the whole figure once more only to measure it
        axes = list(fig.subplots(1, len(columns), squeeze=False, gridspec_kw=dict(
            left=0.1 / fig_width, right=1 - 0.1 / fig_width, bottom=0.05 / fig_height,
            top=1 - TITLE_INCHES / fig_height, wspace=0.1))[0])
        for ax, (title, color, images) in zip(axes, columns, strict=True):
            images = images.detach().float().cpu()
            aspect = images.shape[2] / images.shape[1]
            for row, img in enumerate(images):
                top = row * ROW_STEP
                ax.imshow(img, cmap="gray", extent=(0, aspect, top + 1, top),
                          interpolation="nearest")
            ax.set_xlim(-margin, aspect + margin)
            ax.set_ylim(n * ROW_STEP - (ROW_STEP - 1) + margin, -margin)
            ax.set_title(title, fontsize=8, color=color)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_frame_on(False)
        return fig, axes

    def draw_volumes(self, sts, captured, volumes: torch.Tensor) -> Figure:
        """Volumes ``(B, C, D, H, W)``: each input beside each transformer's output, both as
        three maximum projections (front | side | top, ``orthogonal_projections``; channel
        means where there are several)."""
        shown = [volumes] + [captured[i][1] for i in range(len(sts))]
        titles = ["input (front | side | top)"] + [
            f"ST {i}" if len(sts) > 1 else "ST output" for i in range(len(sts))]
        columns = [(title, "black" if c == 0 else f"C{(c - 1) % 10}",
                    orthogonal_projections(v.float().mean(1, keepdim=True))[:, 0])
                   for c, (title, v) in enumerate(zip(titles, shown, strict=True))]
        fig, _ = self._columns(columns, volumes.shape[0], 3.6)
        return fig


ROW_STEP = 1.15  # rows of a gallery column, in image heights
TITLE_INCHES = 0.3  # the strip above the columns for their titles


def series_regions(sts, on_image: list[bool]) -> list[torch.Tensor | None]:
    """Per transformer, the polygon ``(B, K, 2)`` (normalised image coordinates) it samples, for
    transformers on the image and those in series after them: a deeper one's outline is mapped
    back through every earlier transformer (the frame of its feature map is the previous
    transformer's output frame). ``None`` where that is ambiguous (after parallel ones)."""
    regions: list[torch.Tensor | None] = []
    chain: list = []  # the transformers in series so far, outermost first
    for st, image_level in zip(sts, on_image, strict=True):
        poly = sampled_region(st.transform, st.last_params.float())
        if image_level:
            regions.append(poly)
            chain = [st]
            continue
        parallel = sum(on_image) > 1 or any(
            other is not st and other.in_size == st.in_size
            and other.in_channels == st.in_channels for other in sts)
        for prev in reversed(chain):
            poly = prev.transform.points(prev.last_params.float(), poly)
        regions.append(None if parallel else poly)
        chain.append(st)
    return regions


def image_channels(inputs: torch.Tensor, images: torch.Tensor) -> list[int] | None:
    """The channels of ``images`` that a transformer's ``inputs`` are (all of them, or one
    group of a ``split_channels`` parallel transformer); ``None`` for a feature map."""
    c = inputs.shape[1]
    if inputs.shape[2:] != images.shape[2:] or images.shape[1] % c:
        return None
    if c == images.shape[1]:
        return list(range(c))
    for start in range(0, images.shape[1], c):
        if torch.equal(inputs, images[:, start:start + c]):
            return list(range(start, start + c))
    return None


def to_pixels(points: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Normalised ``(N, 2)`` points -> pixel coordinates (``align_corners=False``)."""
    return torch.stack([((points[:, 0] + 1) * width - 1) / 2,
                        ((points[:, 1] + 1) * height - 1) / 2], dim=1)
