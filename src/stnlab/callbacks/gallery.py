"""A gallery of what each spatial transformer does to a fixed batch of validation images."""

from __future__ import annotations

import logging
from pathlib import Path

import pytorch_lightning as pl
import torch
from matplotlib.figure import Figure

from stnlab.spatial import spatial_transformers

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

    Writes ``<dirpath>/epoch_NNN.png`` and logs the figure to TensorBoard and W&B loggers. Only
    transformers that act on the image (not on deeper feature maps) are drawn.
    """

    def __init__(self, dirpath: str = "gallery", every_n_epochs: int = 5, num_images: int = 8):
        self.dirpath = Path(dirpath)
        self.every_n_epochs = every_n_epochs
        self.num_images = num_images

    def _batch(self, trainer: pl.Trainer, device: torch.device) -> torch.Tensor | None:
        data = trainer.datamodule
        if data is None or getattr(data, "val_set", None) is None:
            return None
        return data.val_set.tensors[0][: self.num_images].to(device)

    def _boxes(self, trainer: pl.Trainer) -> torch.Tensor | None:
        """The digits' boxes of the drawn images, where the data keeps them (evaluation only)."""
        boxes = getattr(trainer.datamodule, "boxes", {}).get("val")
        return None if boxes is None else boxes[: self.num_images]

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch
        last = trainer.max_epochs is not None and epoch == trainer.max_epochs - 1
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        if epoch % self.every_n_epochs and not last:
            return
        images = self._batch(trainer, pl_module.device)
        if images is None:
            return
        sts = [st for st in spatial_transformers(pl_module) if st.in_channels == images.shape[1]]
        if not sts:
            return
        captured: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        hooks = [st.register_forward_hook(
            lambda m, args, out, i=i: captured.__setitem__(i, (args[0].detach(), out.detach())))
            for i, st in enumerate(sts)]
        try:
            with torch.no_grad():
                pl_module(images)
        finally:
            for h in hooks:
                h.remove()
        figure = self.draw(sts, captured, self._boxes(trainer))
        self.dirpath.mkdir(parents=True, exist_ok=True)
        path = self.dirpath / f"epoch_{epoch:03d}.png"
        figure.savefig(path, dpi=80)
        for logger in trainer.loggers:
            name = type(logger).__name__
            if name == "TensorBoardLogger":
                logger.experiment.add_figure("st/gallery", figure, global_step=trainer.global_step)
            elif name == "WandbLogger":
                logger.log_image("st/gallery", [str(path)], step=trainer.global_step)

    def draw(self, sts, captured, boxes: torch.Tensor | None = None) -> Figure:
        """Inputs (each transformer's sampled region outlined, the digit's box dashed where
        ``boxes`` are known) beside each transformer's output."""
        # A bare Figure (no pyplot): draws off-screen without touching the process's backend,
        # so importing stnlab does not switch a notebook's inline plots off.
        n = next(iter(captured.values()))[0].shape[0]
        cols = 1 + len(sts)
        fig = Figure(figsize=(1.6 * cols, 1.6 * n))
        axes = fig.subplots(n, cols, squeeze=False)
        for i, st in enumerate(sts):
            u, v = captured[i]
            grid = st.transform.grid(st.last_params, st.out_size)
            for row in range(n):
                if i == 0:
                    axes[row, 0].imshow(u[row, 0].cpu(), cmap="gray")
                    if boxes is not None:
                        x0, y0, x1, y1 = (float(v) for v in boxes[row])
                        axes[row, 0].plot([x0 - .5, x1 + .5, x1 + .5, x0 - .5, x0 - .5],
                                          [y0 - .5, y0 - .5, y1 + .5, y1 + .5, y0 - .5],
                                          "--", color="yellow", lw=0.8)
                outline = grid_outline(grid[row].cpu(), u.shape[-2], u.shape[-1])
                axes[row, 0].plot(outline[:, 0], outline[:, 1], lw=1)
                axes[row, 1 + i].imshow(v[row, 0].cpu(), cmap="gray")
        axes[0, 0].set_title("input", fontsize=8)
        for i in range(len(sts)):
            axes[0, 1 + i].set_title(f"ST {i}" if len(sts) > 1 else "ST output", fontsize=8)
        for ax in axes.flat:
            ax.set_xticks([])
            ax.set_yticks([])
        fig.tight_layout()
        return fig
