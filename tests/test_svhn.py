"""The SVHN format-1 reader, on small files written here in the same layout as the real ones."""

import sys

import numpy as np
import pytest
import torch

from stnlab.data.mnist import DataSourceError
from stnlab.data.svhn import crop_box, load_svhn, read_digit_struct

# (name, image (width, height), digits as (label, left, top, width, height)); 10 means 0
ENTRIES = [
    ("1.png", (80, 50), [(1, 20, 10, 10, 20), (10, 32, 12, 10, 20)]),  # crop (16, 6, 46, 36)
    ("2.png", (40, 30), [(7, 2, 3, 12, 20)]),  # the grown box leaves the image: clipped
    ("3.png", (90, 30), [(d, 2 + 12 * d, 5, 10, 20) for d in range(1, 7)]),  # 6 digits: left out
    ("4.png", (60, 40), [(3, 10, 5, 10, 20), (4, 22, 6, 10, 20), (10, 34, 5, 10, 20)]),
]


def write_digit_struct(path, entries):
    """``digitStruct.mat`` as MATLAB v7.3 writes it: HDF5, strings as uint16 columns, struct
    arrays as object references into ``#refs#``; a one-digit field holds its value, a
    several-digit field references one 1x1 dataset per digit."""
    h5py = pytest.importorskip("h5py")
    with h5py.File(path, "w") as f:
        refs = f.create_group("#refs#")
        group = f.create_group("digitStruct")
        names = group.create_dataset("name", (len(entries), 1), dtype=h5py.ref_dtype)
        bboxes = group.create_dataset("bbox", (len(entries), 1), dtype=h5py.ref_dtype)
        for i, (name, _, digits) in enumerate(entries):
            chars = np.array([ord(c) for c in name], dtype=np.uint16)[:, None]
            names[i, 0] = refs.create_dataset(f"name{i}", data=chars).ref
            bbox = refs.create_group(f"bbox{i}")
            for k, field in enumerate(("label", "left", "top", "width", "height")):
                values = [float(d[k]) for d in digits]
                if len(values) == 1:
                    bbox.create_dataset(field, data=np.array([[values[0]]]))
                else:
                    items = [refs.create_dataset(f"{field}{i}_{j}", data=np.array([[v]])).ref
                             for j, v in enumerate(values)]
                    bbox.create_dataset(field, data=np.array(items, dtype=h5py.ref_dtype)[:, None])
            bboxes[i, 0] = bbox.ref


@pytest.fixture
def svhn_dir(tmp_path):
    from PIL import Image

    write_digit_struct(tmp_path / "digitStruct.mat", ENTRIES)
    rng = np.random.default_rng(0)
    for name, (w, h), _ in ENTRIES:
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(tmp_path / name)
    return tmp_path


def test_reads_names_labels_and_boxes(svhn_dir):
    structs = read_digit_struct(svhn_dir / "digitStruct.mat")
    assert [s.name for s in structs] == ["1.png", "2.png", "3.png", "4.png"]
    assert structs[0].labels == (1, 0) and structs[1].labels == (7,)
    assert structs[3].labels == (3, 4, 0) and structs[2].labels == (1, 2, 3, 4, 5, 6)
    np.testing.assert_array_equal(structs[0].boxes, [[20, 10, 10, 20], [32, 12, 10, 20]])
    assert len(read_digit_struct(svhn_dir / "digitStruct.mat", limit=2)) == 2


def test_crops_the_grown_union_box_and_resizes(svhn_dir):
    from PIL import Image

    seqs = load_svhn(svhn_dir)
    assert seqs.images.shape == (3, 3, 64, 64) and seqs.images.dtype == torch.uint8
    assert seqs.names == ("1.png", "2.png", "4.png") and seqs.skipped == 1
    assert seqs.targets.tolist() == [[2, 1, 0, 10, 10, 10], [1, 7, 10, 10, 10, 10],
                                     [3, 3, 4, 0, 10, 10]]
    # union (20, 10)-(42, 32), 22x22 about (31, 21), grown by 30% -> 28.6 -> (16, 6, 46, 36)
    with Image.open(svhn_dir / "1.png") as img:
        crop = img.convert("RGB").crop((16, 6, 46, 36))
        expected = crop.resize((64, 64), Image.Resampling.BILINEAR)
    assert torch.equal(seqs.images[0], torch.from_numpy(np.array(expected)).permute(2, 0, 1))


def test_crop_box_clips_to_the_image():
    assert crop_box(np.array([[20, 10, 10, 20], [32, 12, 10, 20]]), (80, 50)) == (16, 6, 46, 36)
    # 12x20 about (8, 13) grown to 15.6x26 -> (0.2, 0)-(15.8, 26) then clipped to 40x30
    assert crop_box(np.array([[2, 3, 12, 20]]), (40, 30)) == (0, 0, 16, 26)
    assert crop_box(np.array([[2, 3, 12, 20]]), (40, 30), expand=0.0) == (2, 3, 14, 23)


def test_bad_files_are_clear(tmp_path):
    pytest.importorskip("h5py")
    with pytest.raises(DataSourceError, match="digitStruct.mat not found"):
        load_svhn(tmp_path)
    (tmp_path / "digitStruct.mat").write_bytes(b"MATLAB 5.0 MAT-file, not HDF5")
    with pytest.raises(DataSourceError, match="not a MATLAB v7.3"):
        read_digit_struct(tmp_path / "digitStruct.mat")


def test_missing_png_names_the_file(svhn_dir):
    (svhn_dir / "2.png").unlink()
    with pytest.raises(DataSourceError, match="2.png"):
        load_svhn(svhn_dir)


def test_without_h5py_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "h5py", None)  # import h5py now raises ImportError
    with pytest.raises(DataSourceError, match="pip install h5py"):
        read_digit_struct(tmp_path / "digitStruct.mat")
