"""Co-localisation: the one-class canvases and their boxes, the triplet loss, the IoU metric and
a short real fit."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from stnlab.data import ColocalisationMNIST
from stnlab.data.distortions.warp import INK_THRESHOLD
from stnlab.errors import StnlabError
from stnlab.models import CoLocaliser
from stnlab.run.stages import run_stages
from stnlab.run.train import build_data_and_module, train
from stnlab.tasks import LitColocalisation
from stnlab.tasks.colocalisation import random_crop_params, triplet_hinge


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    dm = ColocalisationMNIST(data_dir=str(tmp_path_factory.mktemp("coloc")), digit_class=3,
                             num_clutter=16)
    dm.setup()
    return dm


def test_one_class_canvases_and_boxes_for_evaluation_only(data):
    x, y = data.val_set.tensors
    assert x.shape[1:] == (1, 84, 84) and (y == 3).all() and len(y) > 30
    assert len(data.encoder_digits()[1].unique()) == 10  # the encoder sees every class
    boxes = data.boxes["val"]
    assert boxes.shape == (len(y), 4) and ((boxes[:, 2] - boxes[:, 0]) == 27).all()
    digit = ColocalisationMNIST(data_dir=str(data.data_dir), digit_class=3, num_clutter=0)
    digit.setup()  # translated: all the ink is the digit's, inside its 28x28 frame
    for img, (x0, y0, x1, y1) in zip(digit.val_set.tensors[0][:20], digit.boxes["val"][:20],
                                     strict=True):
        ink = img[0] > INK_THRESHOLD
        inside = ink[max(y0, 0):y1 + 1, max(x0, 0):x1 + 1].sum()
        assert inside == ink.sum() > 0
    batch = next(iter(data.train_dataloader()))
    images, labels = data.on_after_batch_transfer(batch, 0)
    assert images.shape[1:] == (1, 84, 84) and (labels == 3).all()  # no box in the batch


def test_training_canvases_made_in_the_loader_workers_are_the_same(data):
    """``distort_on`` comes from ``DigitDataModule`` (through ``**kwargs``): ``workers`` makes
    the same training canvases in the loader as ``device`` after the transfer."""
    workers = ColocalisationMNIST(data_dir=str(data.data_dir), digit_class=3, num_clutter=16,
                                  distort_on="workers")
    workers.setup()
    made = next(iter(workers.train_dataloader()))
    expected = data.on_after_batch_transfer(next(iter(data.train_dataloader())), 0)
    assert len(made) == 2 and made[0].shape[1:] == (1, 84, 84)
    assert all(torch.equal(a, b) for a, b in zip(made, expected, strict=True))


def test_bad_digit_class_and_box():
    with pytest.raises(ValueError, match="data.digit_class"):
        ColocalisationMNIST(digit_class=12)
    with pytest.raises(ValueError, match="data.box"):
        ColocalisationMNIST(box="tight")


def test_triplet_hinge():
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    far = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    assert triplet_hinge(a, far, margin=1.0) == 0.0  # crops alike, far from the random ones
    assert triplet_hinge(a, a, margin=1.0) == pytest.approx(1.0)  # no better than random
    p = random_crop_params(torch.full((100,), 0.25))
    assert (p[:, 0] == 0.25).all() and p[:, 1:].abs().max() <= 0.75  # inside the canvas


def test_detached_partner_moves_only_the_anchor():
    """Crop 0 on empty canvas (alike its random crop), crop 1 on the digit: only crop 0's term
    is active; detached, it no longer pulls crop 1 towards crop 0."""
    crops = torch.tensor([[0.0, 1.0], [1.0, 0.0]], requires_grad=True)
    randoms = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    for detach, moved in ((False, True), (True, False)):
        loss = triplet_hinge(crops, randoms, margin=1.0, detach_partner=detach)
        assert loss.item() == pytest.approx(2.0)  # ((2 - 0 + 1) + (2 - 2 + 1)) / 2
        (grad,) = torch.autograd.grad(loss, crops)
        assert bool(grad[1].abs().sum() > 1.5) is moved


def test_encoder_background_is_the_canvas_without_its_digit(data):
    windows = data.encoder_background(64)
    assert windows.shape == (64, 28, 28) and windows.dtype == torch.uint8
    assert windows.max() > 0  # clutter patches
    translated = ColocalisationMNIST(data_dir=str(data.data_dir), digit_class=3)
    assert translated.encoder_background(8).max() == 0  # blank


def test_iou_metric_of_a_known_crop(data):
    net = CoLocaliser(1, 84)
    module = LitColocalisation(net, encoder_epochs=0)
    boxes = data.boxes["val"]
    x = data.val_set.tensors[0]
    ious = module.crop_ious(x, boxes)  # a fresh net: one centred crop for every image
    assert ious.shape == (len(x),) and ((0 <= ious) & (ious <= 1)).all()
    # a fresh net crops the centred 90% of the canvas: at best the whole 28x28 box inside it
    assert 0 < ious.max() <= (28 / (0.9 * 84)) ** 2 + 1e-4
    # an oracle localisation net: the crop on the box itself has IoU 1
    centre = (boxes[:, :2] + boxes[:, 2:] + 1).float() / 2 / 84 * 2 - 1
    params = torch.cat([torch.full((len(x), 1), 28 / 84), centre], 1)
    from stnlab.spatial.region import pixel_box_to_normalised, region_box_iou

    poly = net.st.transform._points(params, torch.tensor(
        [[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]]).expand(len(x), 4, 2))
    iou = region_box_iou(poly, pixel_box_to_normalised(boxes, 84))
    assert torch.allclose(iou, torch.ones_like(iou), atol=1e-5)


def test_short_fit_logs_iou_and_keeps_the_encoder_frozen(make_cfg):
    cfg = make_cfg("train", ["data=colocalisation", "model=colocaliser", "data.digit_class=1",
                             "module.encoder_epochs=1", "module.anneal_epochs=2",
                             "trainer.enable_progress_bar=false"])
    data, module = build_data_and_module(cfg)
    assert isinstance(module, LitColocalisation)
    untrained = [p.detach().clone() for p in module.encoder.parameters()]
    staged = run_stages(module, data, cfg.trainer, [], [])
    assert staged["pretrain"]["pretrain/acc"] > 0.3  # 11 classes: chance is 0.09
    assert any(not torch.equal(a, b) for a, b in zip(untrained, module.encoder.parameters(),
                                                     strict=True))
    assert bool(module.encoder_ready) and module.stages(data) == []  # pretrained once
    trainer = pl.Trainer(max_epochs=2, limit_train_batches=3, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    trainer.fit(module, datamodule=data)
    assert not any(p.requires_grad for p in module.encoder.parameters())
    metrics = trainer.callback_metrics
    assert 0.0 <= float(metrics["val/iou_0.5"]) <= 1.0 and "val/iou_0.5_best" in metrics
    assert module.net.st.transform.max_scale == pytest.approx(0.36)  # annealing ended
    test = trainer.test(module, datamodule=data, verbose=False)[0]
    assert {"test/iou_0.5", "test/iou_mean", "test/error"} <= set(test)


def test_fit_without_the_pretraining_stage_is_refused(data):
    module = LitColocalisation(CoLocaliser(1, 84), encoder_epochs=1)
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    with pytest.raises(ValueError, match="encoder is not pretrained"):
        trainer.fit(module, datamodule=data)
    with pytest.raises(StnlabError, match="no encoder_digits"):  # nothing to pretrain it on
        module.stages(object())


def test_run_pretrains_in_a_logged_stage_and_a_resumed_run_does_not(make_cfg, caplog):
    """The encoder's pretraining is a stage of ``train``: its metrics reach the run's logger
    under ``pretrain/``; resumed from the checkpoint, the run fits no stage and its frozen
    encoder keeps the checkpoint's weights."""
    caplog.set_level(logging.INFO, logger="stnlab.run.stages")
    base = ["data=colocalisation", "model=colocaliser", "data.digit_class=1", "debug=limit",
            "module.encoder_epochs=1", "trainer.enable_progress_bar=false"]
    first = train(make_cfg("train", [*base, "trainer.max_epochs=1"]))
    out = Path(first["output_dir"])
    rows = list(csv.DictReader((out / "csv" / "metrics.csv").open()))
    pretrain = [float(r["pretrain/acc"]) for r in rows if r.get("pretrain/acc")]
    assert len(pretrain) == 1 and pretrain[0] > 0.3  # one epoch, above chance (0.09)
    assert "stage pretrain: 1 epochs" in caplog.text

    def encoder() -> dict[str, torch.Tensor]:
        state = torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
        return {k: v for k, v in state.items() if k.startswith("encoder.")}

    before = encoder()
    caplog.clear()
    resumed = train(make_cfg("train", [*base, "trainer.max_epochs=2", "ckpt_path=last"]))
    assert resumed["epochs"] == 2 and "stage pretrain" not in caplog.text
    after = encoder()
    assert before.keys() == after.keys() and before
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_classification_data_is_refused(make_cfg):
    with pytest.raises(StnlabError, match="colocalisation"):
        build_data_and_module(make_cfg("train", ["model=colocaliser",
                                                 "module=colocalisation"]))
