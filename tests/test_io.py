"""``stnlab.io``: the one atomic write every cache, download and results file goes through."""

import json

import pytest
import torch

from stnlab.io import atomic_save, atomic_write, write_json


def test_atomic_write_replaces_the_file_or_leaves_it(tmp_path):
    path = tmp_path / "new" / "f.bin"  # the folder is made
    with atomic_write(path) as f:
        f.write(b"first")
    assert path.read_bytes() == b"first"
    with pytest.raises(RuntimeError), atomic_write(path) as f:
        f.write(b"half of the sec")
        assert path.read_bytes() == b"first"  # nothing shows before the block ends
        raise RuntimeError("the writer fails")
    assert path.read_bytes() == b"first"
    assert [p.name for p in path.parent.iterdir()] == ["f.bin"]  # no temporary file left


def test_write_json_and_atomic_save_round_trip(tmp_path):
    write_json({"b": 1, "a": tmp_path}, tmp_path / "r.json")
    text = (tmp_path / "r.json").read_text()
    assert json.loads(text) == {"a": str(tmp_path), "b": 1}
    assert text.index('"a"') < text.index('"b"')  # sorted keys
    atomic_save({"x": torch.arange(3)}, tmp_path / "c.pt")
    assert torch.equal(torch.load(tmp_path / "c.pt", weights_only=True)["x"], torch.arange(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt", "r.json"]
