"""keep_freed_memory: large blocks come from the heap and stay there, so a training step does
not page-fault its large tensors anew (stnlab.cli.allocator); only the stnlab-train command sets
it, never a library call."""

from __future__ import annotations

import ctypes
import platform
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import stnlab
from stnlab.cli.allocator import keep_freed_memory

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def _mallinfo() -> _MallInfo2:
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = _MallInfo2
    return libc.mallinfo2()


@glibc
def test_large_tensors_come_from_the_heap_and_their_memory_is_reused():
    """After it, a 40 MB tensor (over glibc's largest mmap threshold) is no fresh mapping, and
    freeing it gives no memory back: steps that allocate and free such tensors settle on one
    heap instead of growing it or mapping pages anew."""
    assert keep_freed_memory()
    before = _mallinfo()
    x = torch.ones(10_000_000)  # 40 MB
    during = _mallinfo()
    assert during.hblkhd == before.hblkhd  # no new mmapped bytes
    assert during.uordblks >= before.uordblks + 40_000_000
    del x
    assert _mallinfo().arena >= during.arena  # not trimmed: the pages stay for the next step
    arenas = []
    for _ in range(6):  # steps
        a, b = torch.ones(10_000_000), torch.ones(5_000_000)
        del a, b
        arenas.append(_mallinfo().arena)
    assert arenas[-1] == arenas[2]  # settled


def test_keep_freed_memory_is_a_checked_config_key(make_cfg):
    """``keep_freed_memory=false`` switches it off for stnlab-train; a non-boolean is refused,
    naming the key."""
    from stnlab.config.validate import check_config
    from stnlab.errors import StnlabError

    cfg = make_cfg("train", ["keep_freed_memory=false"])
    assert cfg.keep_freed_memory is False
    with pytest.raises(StnlabError, match="keep_freed_memory"):
        check_config(make_cfg("train", ["keep_freed_memory=sometimes"]))


def test_no_library_module_calls_mallopt():
    """The process-wide allocator setting lives in the console script's package only."""
    root = Path(stnlab.__file__).parent
    for package in ("run", "spatial", "models", "tasks", "data"):
        for path in (root / package).rglob("*.py"):
            text = path.read_text()
            assert "mallopt" not in text and "allocator" not in text, path


# A fresh process: does a 512 MiB tensor (larger than any free block a tiny run leaves) come from
# a fresh mapping (glibc's default policy) after train(cfg), and from the heap after the
# command's own entry (stnlab.cli.train)? torch.empty touches none of its pages.
_SCRIPT = textwrap.dedent("""
    import ctypes, sys
    import torch
    from hydra import compose, initialize_config_dir
    from stnlab.config import CONFIG_DIR

    class MallInfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
            "fordblks", "keepcost")]

    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = MallInfo2

    def mapped():
        before = libc.mallinfo2().hblkhd
        x = torch.empty(2**27)
        return libc.mallinfo2().hblkhd > before

    root, data = sys.argv[1], sys.argv[2]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=[
            f"paths.root_dir={root}", f"paths.output_dir={root}/out", f"paths.data_dir={data}",
            "debug=fast", "model=cnn"])
    from stnlab.run.train import train
    train(cfg)
    print("after train(cfg), mapped:", mapped())
    from stnlab.cli.train import _train
    _train(cfg)
    print("after the command, mapped:", mapped())
""")


@glibc
def test_train_leaves_the_allocator_alone_and_the_command_sets_it(tmp_path, data_dir):
    proc = subprocess.run([sys.executable, "-c", _SCRIPT, str(tmp_path), str(data_dir)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert "after train(cfg), mapped: True" in proc.stdout
    assert "after the command, mapped: False" in proc.stdout
