"""Co-localisation nets (the paper, section 4): an attention transformer that crops the object
out of a large canvas, and the small digit encoder whose features the triplet loss compares."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from stnlab.spatial import SpatialTransformer, sample
from stnlab.spatial.transforms import Crop

from .backbones import ConvBlock, _Model, ints, size2


class DigitEncoder(nn.Module):
    """Crops -> feature vectors ``(B, features)``: ``[conv 5x5 -> ReLU -> max-pool 2] x 2 ->
    FC features -> ReLU``. Pretrained as a classifier with a temporary linear head
    (``stnlab.tasks.pretraining.EncoderPretraining``)."""

    def __init__(
        self,
        in_channels: int = 1,
        in_size: int | Sequence[int] = 28,
        channels: int | Sequence[int] = (16, 32),
        features: int = 64,
    ) -> None:
        super().__init__()
        h, w = size2(in_size)
        c = int(in_channels)
        blocks = []
        for co in ints(channels):
            blocks.append(ConvBlock(c, co, 5, 2))
            c, h, w = co, h // 2, w // 2
        if h < 1 or w < 1:
            raise ValueError(f"encoder in_size={size2(in_size)} is too small for "
                             f"{len(ints(channels))} pools; use fewer channels or a larger size")
        self.in_size = size2(in_size)
        self.body = nn.Sequential(*blocks, nn.Flatten(), nn.Linear(c * h * w, int(features)),
                                  nn.ReLU(inplace=True))
        self.features = int(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class CoLocaliser(_Model):
    """An attention transformer (scale + shift: a square crop) over the canvas; ``forward``
    returns the crop ``(B, C, *out_size)``. The scale is kept in ``[min_scale, max_scale]``
    and the centre on the canvas (the ``crop`` family), and the crop starts centred at
    ``init_scale``: with the unbounded family the triplet loss is lowered by zooming out (a
    shrunken canvas differs from any random crop of it), and on the translated canvases every
    run zoomed out within a few epochs.

    ``crop(x, params)`` samples crops of given attention parameters (the triplet loss's random
    crops). The localisation net defaults to the paper's conv net with batch norm
    (``loc_kwargs={"norm": True}``; without it the ReLUs die on clutter, as in
    ``model=st_cnn_att``).
    """

    task = "colocalisation"

    def __init__(
        self,
        in_channels: int,
        in_size: int | Sequence[int],
        num_classes: int = 10,
        transform: str = "attention",
        out_size: int | Sequence[int] = (28, 28),
        loc: str = "conv",
        loc_kwargs: dict | None = None,
        init_scale: float = 0.9,
        min_scale: float = 0.1,
        max_scale: float = 1.0,
    ) -> None:
        super().__init__()
        if transform != "attention":
            raise ValueError(f"model.transform={transform!r}: co-localisation crops with the "
                             "attention family (scale + shift), use transform=attention")
        kwargs = {"norm": True} if loc_kwargs is None else dict(loc_kwargs)
        self.st = SpatialTransformer(int(in_channels), size2(in_size),
                                     transform=Crop(min_scale, max_scale),
                                     out_size=size2(out_size), loc=loc, loc_kwargs=kwargs,
                                     init_scale=float(init_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.st(x)

    def crop(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """Crops of ``x`` at attention parameters ``(B, 3)`` ``(s, tx, ty)`` as the warp uses
        them (no bounding applied)."""
        grid = self.st.transform._grid(self.st.transform.check(params), self.st.out_size)
        return sample(x, grid, mode=self.st.sampling, padding=self.st.padding)

    def last_scale(self) -> torch.Tensor:
        """The scale ``(B,)`` of the last forward's crops (after bounding), detached."""
        theta = self.st.transform.theta(self.st.transform.constrain(self.st.last_params))
        return theta[:, 0, 0]


__all__ = ["CoLocaliser", "DigitEncoder"]
