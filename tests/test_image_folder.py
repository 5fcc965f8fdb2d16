"""Image folders, CUB-200-2011 and the fine-grained ST model, on tiny images the tests draw."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from PIL import Image, ImageDraw

from stnlab.data import CUBData, DataSourceError, ImageFolderData
from stnlab.models import FineGrainedST
from stnlab.run.train import build_data_and_module

COLOURS = {"red": (220, 30, 30), "blue": (30, 30, 220)}


def draw(path: Path, colour, size=(40, 30), shape: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", size, (250, 250, 250))
    d = ImageDraw.Draw(img)
    d.ellipse([4 + shape, 4, 24 + shape, 24], fill=colour)
    img.save(path)


def make_folder(root: Path, per_class: int = 6, ext: str = "png") -> Path:
    for name, colour in COLOURS.items():
        for i in range(per_class):
            draw(root / name / f"{i}.{ext}", colour, shape=i)
    return root


def make_cub(root: Path, per_class: int = 4) -> Path:
    lines = {"images.txt": [], "image_class_labels.txt": [], "train_test_split.txt": [],
             "bounding_boxes.txt": []}
    i = 0
    for c, (name, colour) in enumerate(COLOURS.items(), 1):
        for k in range(per_class):
            i += 1
            rel = f"{c:03d}.{name}/{name}_{k}.jpg"
            draw(root / "images" / rel, colour, shape=k)
            lines["images.txt"].append(f"{i} {rel}")
            lines["image_class_labels.txt"].append(f"{i} {c}")
            lines["train_test_split.txt"].append(f"{i} {int(k < per_class - 1)}")
            lines["bounding_boxes.txt"].append(f"{i} 4.0 4.0 20.0 20.0")
    for name, rows in lines.items():
        (root / name).write_text("\n".join(rows) + "\n")
    return root


def test_folder_split_is_seeded_and_eval_is_deterministic(tmp_path):
    root = make_folder(tmp_path / "imgs")
    a = ImageFolderData(root=str(root), size=16, resize=20, val_fraction=0.2, test_fraction=0.2)
    b = ImageFolderData(root=str(root), size=16, resize=20, val_fraction=0.2, test_fraction=0.2)
    a.setup(), b.setup()
    assert a.classes == ["blue", "red"] and a.num_classes == 2 and a.dims == (3, 16, 16)
    assert a.val_set.paths == b.val_set.paths and len(a.test_set) == 2 and len(a.train_set) == 8
    assert not set(a.train_set.paths) & set(a.val_set.paths + a.test_set.paths)
    x, y = next(iter(a.val_dataloader()))
    xa, _ = a.on_after_batch_transfer((x, y), 0)
    xb, _ = b.on_after_batch_transfer(next(iter(b.val_dataloader())), 0)
    assert xa.shape == (2, 3, 16, 16) and xa.dtype == torch.float32 and torch.equal(xa, xb)
    red = a.classes.index("red")
    assert xa[y == red][:, 0].mean() > xa[y == red][:, 2].mean()  # the red discs stay red


def test_training_augmentation_is_seeded_by_seed_and_epoch(tmp_path):
    root = make_folder(tmp_path / "imgs")
    dm = ImageFolderData(root=str(root), size=16, resize=24, seed=3)
    dm.setup()
    x, y, idx = next(iter(dm.train_dataloader()))
    one = dm.augment(x, idx, epoch=0)
    assert one.shape == (len(x), 3, 16, 16) and 0 <= one.min() and one.max() <= 1
    assert torch.equal(one, dm.augment(x, idx, epoch=0))
    assert not torch.equal(one, dm.augment(x, idx, epoch=1))


def test_train_val_test_folders(tmp_path):
    root = tmp_path / "imgs"
    make_folder(root / "train", per_class=4)
    make_folder(root / "val", per_class=1)
    make_folder(root / "test", per_class=2)
    dm = ImageFolderData(root=str(root), size=16, resize=16)
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (8, 2, 4)


def test_bad_input_names_the_file_or_field(tmp_path):
    root = make_folder(tmp_path / "imgs")
    with pytest.raises(DataSourceError, match="not found"):
        ImageFolderData(root=str(tmp_path / "nope")).setup()
    (root / "green").mkdir()
    with pytest.raises(DataSourceError, match=r"class folder .*green has no images"):
        ImageFolderData(root=str(root), size=16).setup()
    (root / "green").rmdir()
    bad = root / "red" / "9.png"
    bad.write_bytes(b"not an image")
    dm = ImageFolderData(root=str(root), size=16, val_fraction=0.0, test_fraction=0.0)
    with pytest.raises(DataSourceError, match=r"cannot read image .*9\.png"):
        dm.setup()
        for _ in dm.train_set:
            pass
    with pytest.raises(ValueError, match="data.size"):
        ImageFolderData(root=str(root), size=4)
    with pytest.raises(ValueError, match="data.size"):
        FineGrainedST(3, 12, 2, num_st=2)  # 6x6 crops for a backbone that needs 8x8


def test_cub_layout_and_missing_data(tmp_path):
    with pytest.raises(DataSourceError, match=r"CUB-200-2011 not found.*images\.txt"):
        CUBData(data_dir=str(tmp_path)).setup()
    make_cub(tmp_path / "CUB_200_2011")
    dm = CUBData(data_dir=str(tmp_path), size=16, resize=20, val_fraction=0.34)
    dm.setup()
    assert dm.num_classes == 2 and len(dm.test_set) == 2
    assert len(dm.train_set) + len(dm.val_set) == 6 and len(dm.val_set) == 2
    assert dm.boxes["test"].shape == (2, 4)
    x, y = dm.on_after_batch_transfer(next(iter(dm.test_dataloader())), 0)
    assert x.shape == (2, 3, 16, 16) and sorted(y.tolist()) == [0, 1]


@pytest.mark.parametrize("num_st, shared", [(0, False), (2, False), (4, True)])
def test_fine_grained_model(num_st, shared):
    net = FineGrainedST(3, 32, 5, num_st=num_st, shared_backbone=shared)
    assert net(torch.rand(2, 3, 32, 32)).shape == (2, 5)
    assert len(net.spatial_transformers()) == num_st
    assert len(net.backbones) == (1 if shared or num_st == 0 else num_st)
    if num_st > 1:  # the transformers start on different crops
        biases = {tuple(st.loc.head.bias.tolist()) for st in net.transformers}
        assert len(biases) == num_st


def test_cub_experiment_trains_on_the_written_data(make_cfg, tmp_path, data_dir):
    make_cub(Path(data_dir) / "CUB_200_2011", per_class=10)  # 12 training images
    cfg = make_cfg("train", ["experiment=cub", "data.size=32", "data.batch_size=4",
                             "data.val_fraction=0.34", "model.num_st=2"])
    pl.seed_everything(0)
    data, module = build_data_and_module(cfg)
    assert module.loc_lr_mult == pytest.approx(1e-4)
    trainer = pl.Trainer(max_epochs=4, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, datamodule=data)
    groups = {g["name"]: g["lr"] for g in trainer.optimizers[0].param_groups}
    assert groups["loc"] == pytest.approx(groups["net"] * 1e-4)
    # red or blue: both test images right (chance: half), as in 10 of 10 seeds tried
    assert trainer.test(module, datamodule=data, verbose=False)[0]["test/acc"] == 1.0
