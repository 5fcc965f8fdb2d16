"""A stage that a run fits before its main fit (``stnlab.run.stages``): an encoder trained as a
classifier with a temporary linear head, which is then thrown away (the co-localisation
encoder's pretraining). A Lightning fit of its own, so that the run's trainer settings, loggers
and progress bar see it."""

from __future__ import annotations

import math

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Sampler, TensorDataset


class EpochPermutations(Sampler[torch.Tensor]):
    """Index batches of a new permutation of ``range(n)`` every epoch, drawn from the global RNG
    (which the run seeds): a seeded run sees the batches of the hand-written loop this stage
    replaced, so its encoder, and the studies' figures, are unchanged."""

    def __init__(self, n: int, batch_size: int) -> None:
        self.n, self.batch_size = int(n), int(batch_size)

    def __len__(self) -> int:
        return math.ceil(self.n / self.batch_size)

    def __iter__(self):
        return iter(torch.randperm(self.n).split(self.batch_size))


class EncoderPretraining(pl.LightningModule):
    """Train ``encoder`` with a temporary linear head on ``images`` (uint8 ``(N, H, W)``, resized
    to ``size``) and ``labels`` for ``max_epochs`` epochs of Adam at ``lr``.

    Metrics: ``pretrain/loss`` and ``pretrain/acc`` (the training accuracy of each epoch).
    ``ready`` (a bool tensor of the encoder's owner) is set when the fit ends, so the owner
    knows its encoder was trained."""

    name = "pretrain"
    """The stage's name: the prefix of its metrics."""

    def __init__(self, encoder: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                 max_epochs: int, lr: float, size: tuple[int, int], batch_size: int = 64,
                 ready: torch.Tensor | None = None) -> None:
        super().__init__()
        if max_epochs < 1:
            raise ValueError(f"encoder pretraining needs max_epochs >= 1, got {max_epochs}")
        x = images.float().div(255).unsqueeze(1)
        if tuple(x.shape[2:]) != tuple(size):
            x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)
        self.dataset = TensorDataset(x, labels.long())
        self.encoder = encoder
        with torch.no_grad():
            dim = encoder(x[:2]).shape[1]
        self.head = nn.Linear(dim, int(labels.max()) + 1)
        self.max_epochs, self.lr, self.batch_size = int(max_epochs), float(lr), int(batch_size)
        self.ready = ready

    def train_dataloader(self) -> DataLoader:
        # batch_size=None: the sampler's items are whole index batches (TensorDataset takes
        # them); a generator of its own for the loader's per-epoch worker seed, which would
        # otherwise be drawn from the global RNG between the sampler's permutations
        return DataLoader(self.dataset, sampler=EpochPermutations(len(self.dataset),
                                                                   self.batch_size),
                          batch_size=None, generator=torch.Generator())

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = batch
        logits = self.head(self.encoder(x))
        loss = F.cross_entropy(logits, y)
        acc = (logits.argmax(1) == y).float().mean()
        self.log_dict({f"{self.name}/loss": loss, f"{self.name}/acc": acc}, on_step=False,
                      on_epoch=True, prog_bar=True, batch_size=len(y), sync_dist=True)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.lr)

    def on_fit_end(self) -> None:
        if self.ready is not None:
            self.ready.fill_(True)


__all__ = ["EncoderPretraining", "EpochPermutations"]
