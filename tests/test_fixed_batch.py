"""``fixed_batch``: every DataModule under conf/data gives its first evaluation inputs exactly as
its loaders feed them to the model, and boxes where (and only where) the data has them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from PIL import Image

from stnlab.config import CONFIG_DIR
from test_image_folder import make_cub, make_folder

DATA = sorted(p.stem for p in (Path(CONFIG_DIR) / "data").glob("*.yaml"))
HAS_BOXES = {"mnist", "colocalisation", "cub"}
"""The data options whose evaluation examples carry boxes: one digit a 2-D canvas (the default
recipe, RTS), co-localisation's digit, CUB's birds."""


def build(make_cfg, tmp_path: Path, name: str):
    """The DataModule of ``data=<name>`` as stnlab-train composes it, on tiny data."""
    small = ["data.val_size=40", "data.test_size=30"]
    extra = {
        "image_folder": [f"data.root={make_folder(tmp_path / 'imgs')}", "data.size=16",
                         "data.resize=20"],
        "cub": ["data.size=16", "data.resize=20", "data.val_fraction=0.34"],
        "svhn": [f"data.data_dir={tmp_path}", "data.val_size=1"],
    }.get(name, small)
    if name == "cub":
        make_cub(tmp_path / "data" / "CUB_200_2011")
        extra.append(f"data.data_dir={tmp_path / 'data'}")
    if name == "svhn":
        pytest.importorskip("h5py")
        from test_sequence import write_svhn

        write_svhn(tmp_path / "svhn")
    dm = instantiate(make_cfg("train", [f"data={name}", *extra]).data)
    dm.setup()
    return dm


@pytest.mark.parametrize("name", DATA)
def test_fixed_batch_is_what_the_loader_feeds_the_model(make_cfg, tmp_path, name):
    dm = build(make_cfg, tmp_path, name)
    loaders = {"val": dm.val_dataloader(), "test": dm.test_dataloader()}
    for split, loader in loaders.items():
        fed = dm.on_after_batch_transfer(next(iter(loader)), 0)[0]
        k = min(3, len(fed))
        x, boxes = dm.fixed_batch(split, k)
        assert x.device.type == "cpu" and x.dtype == torch.float32
        assert tuple(x.shape[1:]) == tuple(dm.dims) and len(x) == k
        assert torch.equal(x, fed[:k])
        assert torch.equal(dm.fixed_batch(split, k)[0], x)  # fixed: the same every call
        everything, all_boxes = dm.fixed_batch(split)
        assert len(everything) == len(getattr(dm, f"{split}_set"))
        empty, no_boxes = dm.fixed_batch(split, 0)
        assert empty.shape == (0, *dm.dims)
        if name in HAS_BOXES:
            assert boxes.shape == (k, 4) and no_boxes.shape == (0, 4)
            assert torch.equal(all_boxes[:k], boxes)
            h, w = x.shape[-2:]
            assert (boxes[:, 0] <= boxes[:, 2]).all() and (boxes[:, 1] <= boxes[:, 3]).all()
            assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= w - 1).all()
            assert (boxes[:, 3] <= h - 1).all()
        else:
            assert boxes is None and all_boxes is None and no_boxes is None
    with pytest.raises(ValueError, match="split='train'"):
        dm.fixed_batch("train")


def test_fixed_batch_sets_up_the_data_itself(make_cfg, tmp_path):
    dm = instantiate(make_cfg("train", ["data.val_size=40", "data.test_size=30"]).data)
    x, boxes = dm.fixed_batch("test", 5)
    assert x.shape == (5, *dm.dims) and boxes.shape == (5, 4)


def test_cub_boxes_follow_the_bird_into_the_evaluation_input(tmp_path):
    """Each image is a red square on a grey ground at a known (x, y, w, h) in a non-square
    image; after the resize, the square centre crop and the centre ``size`` crop, the box that
    ``fixed_batch`` gives is where the red pixels are (to a pixel: bilinear edges)."""
    from stnlab.data import CUBData

    root = tmp_path / "CUB_200_2011"
    placed = [((60, 40), (30, 10, 20, 20)), ((40, 64), (5, 30, 24, 12)),
              ((50, 50), (-1, -1, 0, 0))]  # the last: a box wholly outside, cut off
    lines = {"images.txt": [], "image_class_labels.txt": [], "train_test_split.txt": [],
             "bounding_boxes.txt": []}
    for i, ((w, h), (x, y, bw, bh)) in enumerate(placed * 2, 1):
        img = Image.new("RGB", (w, h), (128, 128, 128))
        if bw:
            img.paste((255, 0, 0), (x, y, x + bw, y + bh))
        (root / "images").mkdir(parents=True, exist_ok=True)
        img.save(root / "images" / f"{i}.png")
        lines["images.txt"].append(f"{i} {i}.png")
        lines["image_class_labels.txt"].append(f"{i} {1 + i % 2}")
        lines["train_test_split.txt"].append(f"{i} {int(i <= 3)}")
        lines["bounding_boxes.txt"].append(f"{i} {x} {y} {bw} {bh}")
    for name, rows in lines.items():
        (root / name).write_text("\n".join(rows) + "\n")
    dm = CUBData(data_dir=str(tmp_path), size=16, resize=20, val_fraction=0.34)
    x, boxes = dm.fixed_batch("test")
    assert x.shape == (3, 3, 16, 16) and boxes.shape == (3, 4)
    for img, box, name in zip(x, boxes, dm.test_set.paths, strict=True):
        red = (img[0] > 0.75) & (img[1] < 0.25)
        if name.name == "6.png":  # nothing red, and an empty box
            assert not red.any() and (box[2] < box[0] or box[3] < box[1])
            continue
        ys, xs = torch.nonzero(red, as_tuple=True)
        found = torch.tensor([xs.min(), ys.min(), xs.max(), ys.max()], dtype=torch.float32)
        assert torch.allclose(box, found, atol=1.0), (name, box, found)
    assert boxes[0].tolist() == pytest.approx([8.0, 3.0, 15.0, 12.0])  # worked out by hand
