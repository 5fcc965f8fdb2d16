"""The digits' boxes on the fixed sets and the crop IoU logged from them (st/iou, test/st_iou)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from stnlab.callbacks import CropIoU, crop_iou
from stnlab.data import DistortedMNIST
from stnlab.data.distortions import INK_THRESHOLD, make_distortion
from stnlab.run.train import build_data_and_module, train
from stnlab.spatial import spatial_transformers


def _digits(n: int) -> torch.Tensor:
    from stnlab.data import load_sample

    return load_sample().images[:n].float().div(255).unsqueeze(1)


@pytest.mark.parametrize("name", ["none", "RTS", "cluttered"])
def test_boxes_hold_the_digit_and_with_boxes_gives_the_same_images(name):
    d, x = make_distortion(name), _digits(40)
    plain = d(x, torch.Generator().manual_seed(3))
    images, boxes = d.with_boxes(x, torch.Generator().manual_seed(3))
    assert torch.equal(images, plain)
    assert boxes.shape == (40, 4) and boxes.dtype == torch.long
    h, w = d.out_size
    assert (boxes[:, 0] <= boxes[:, 2]).all() and (boxes[:, 2] < w).all()
    assert (boxes[:, 1] <= boxes[:, 3]).all() and (boxes[:, 3] < h).all()
    if name != "cluttered":  # one digit and nothing else: the box is the image's ink box
        for img, (x0, y0, x1, y1) in zip(images[:, 0], boxes.tolist(), strict=True):
            ink = (img > INK_THRESHOLD).nonzero()
            assert (ink[:, 0].min(), ink[:, 0].max()) == (y0, y1)
            assert (ink[:, 1].min(), ink[:, 1].max()) == (x0, x1)


def test_cluttered_box_is_the_digit_alone_not_its_clutter():
    d, x = make_distortion("cluttered", num_clutter=12), _digits(30)
    params = d.sample_params(30, torch.Generator().manual_seed(0))
    digit = d.layout(x, params)["digit"]
    _, boxes = d.with_boxes(x, torch.Generator().manual_seed(0))
    for img, (x0, y0, x1, y1) in zip(digit[:, 0], boxes.tolist(), strict=True):
        inside = torch.zeros_like(img, dtype=torch.bool)
        inside[y0:y1 + 1, x0:x1 + 1] = True
        assert not ((img > INK_THRESHOLD) & ~inside).any()


def test_fixed_sets_carry_boxes_only_where_there_is_one_digit_a_canvas(tmp_path):
    common = dict(data_dir=tmp_path, val_size=50, test_size=50)
    dm = DistortedMNIST(distortion="cluttered", **common)
    dm.setup()
    assert dm.boxes["val"].shape == (50, 4) and dm.boxes["test"].shape == (50, 4)
    again = DistortedMNIST(distortion="cluttered", **common)  # from the cache
    again.setup()
    assert torch.equal(again.boxes["val"], dm.boxes["val"])
    addition = DistortedMNIST(distortion="addition", **common)
    addition.setup()
    assert addition.boxes == {}
    assert len(next(iter(dm.train_dataloader()))) == 3  # training batches: no boxes


def test_untrained_transformer_iou_is_box_area_over_canvas_area(make_cfg):
    """With a learning rate of 0 the transformer stays the identity: it samples the whole
    canvas, so its IoU with each box is the box's share of the canvas."""
    cfg = make_cfg("train", ["debug=limit", "model=st_cnn_att", "model.st_init_scale=1",
                             "data.distortion=cluttered",
                             "data.val_size=100", "data.test_size=100", "optimizer.lr=0",
                             "scheduler=none"])
    results = train(cfg)
    out = Path(cfg.paths.output_dir)
    dm = DistortedMNIST(distortion="cluttered", data_dir=cfg.paths.data_dir, val_size=100,
                        test_size=100)
    dm.setup()
    for split, key in (("val", None), ("test", "test/st_iou")):
        b = dm.boxes[split].double()
        expected = float(((b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1) / 60 ** 2).mean())
        if key:
            assert results[key] == pytest.approx(expected, rel=1e-5)
            assert results["test/st_area"] == pytest.approx(1.0)
        else:
            with (out / "csv" / "metrics.csv").open() as f:
                logged = [float(r["st/iou"]) for r in csv.DictReader(f) if r.get("st/iou")]
            assert logged and logged[-1] == pytest.approx(expected, rel=1e-5)
    assert json.loads((out / "results.json").read_text())["test/st_iou"] == results["test/st_iou"]


def test_models_without_a_transformer_log_no_iou(make_cfg):
    results = train(make_cfg("train", ["debug=fast", "model=cnn", "data.distortion=cluttered",
                                       "data.val_size=100", "data.test_size=100"]))
    assert "test/st_iou" not in results


@pytest.mark.parametrize(("limit_val_batches", "cap", "seen", "measured"), [
    (1.0, None, 100, 100), (2, None, 60, 100), (1.0, 45, 45, 45), (1, 45, 30, 45)])
def test_iou_from_the_evaluation_pass_is_the_measured_sets(make_cfg, limit_val_batches, cap,
                                                          seen, measured):
    """The logged st/iou and st/area come from the validation batches' own warps (4 batches,
    the last one short) or, when fewer batches run than the measured examples, from a pass over
    them: both equal ``crop_iou`` of the trained transformer over the measured examples, the
    whole set or (``max_bytes`` for ``cap`` inputs) its first ``cap``."""
    cfg = make_cfg("train", ["data.val_size=100", "data.eval_batch_size=30"])
    data, module = build_data_and_module(cfg)
    per_example = 4 * math.prod(data.dims)
    callback = CropIoU() if cap is None else CropIoU(max_bytes=cap * per_example + 3)
    trainer = pl.Trainer(max_epochs=1, limit_train_batches=3, limit_val_batches=limit_val_batches,
                         num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[callback])
    trainer.fit(module, datamodule=data)
    assert callback._seen == seen
    module.eval()
    images, boxes = data.fixed_batch("val", measured)
    iou, area = crop_iou(spatial_transformers(module)[0], images, boxes)
    assert 0 < iou < 1 and 0 < area
    assert float(trainer.callback_metrics["st/iou"]) == pytest.approx(iou, rel=1e-5)
    assert float(trainer.callback_metrics["st/area"]) == pytest.approx(area, rel=1e-5)
    if measured < 100:  # not the whole set's figure
        whole = crop_iou(spatial_transformers(module)[0], *data.fixed_batch("val"))
        assert whole != pytest.approx((iou, area), rel=1e-5)
