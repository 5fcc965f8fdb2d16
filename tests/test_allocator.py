"""keep_freed_memory: large blocks come from the heap and stay there, so a training step does
not page-fault its large tensors anew (stnlab.run.allocator)."""

from __future__ import annotations

import ctypes
import platform

import pytest
import torch

from stnlab.run.allocator import keep_freed_memory

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
