"""Optional CPU kernels (numba) of the sampler, for channels-last feature maps: what the CNNs
hand a spatial transformer on the CPU. Installed with ``pip install "stnlab[cpu]"`` (``make
install`` does); nothing else in stnlab needs numba.

They sample bilinearly with zero padding as rows of the map's ``(B*H*W, C)`` view, so that the
output and the map's gradient stay channels-last like the convolutions around them
(``kernels.py``: the numba code; ``rows.py``: its autograd function). ``sample()`` takes them
where ``can_sample`` says so; everywhere else, without numba too, or with the environment
variable ``STNLAB_NUMBA=0``, it runs ``grid_sample`` on the map's NCHW copy: the same values
and gradients up to float rounding (tests/test_spatial.py). ST-CNN Multi's 32-channel 32x32
map, forward + backward on 1 thread: about 3x faster than ``grid_sample``
(``benchmarks/bench_sampler.py``).
"""

from __future__ import annotations

import functools
import os
import warnings
from types import ModuleType

import torch

ENV_SWITCH = "STNLAB_NUMBA"


@functools.cache
def _import() -> ModuleType | None:
    try:
        from . import rows
    except ImportError:  # numba is not installed: grid_sample, silently
        return None
    except RuntimeError as err:  # numba is installed but cannot run, e.g. no cache folder
        warnings.warn(f"stnlab's numba sampler kernels are unavailable ({err}); sampling "
                      "channels-last maps takes grid_sample (set NUMBA_CACHE_DIR to a "
                      "writable folder)", RuntimeWarning, stacklevel=3)
        return None
    return rows


def available() -> bool:
    """numba is installed and works, and ``STNLAB_NUMBA=0`` is not set (numba is imported
    on the first call)."""
    return os.environ.get(ENV_SWITCH, "1") != "0" and _import() is not None


def _compiling() -> bool:
    """Inside ``torch.compile`` tracing (which cannot trace numba): torch >= 2.3 says so."""
    is_compiling = getattr(torch.compiler, "is_compiling", None)
    return bool(is_compiling and is_compiling())


def can_sample(u: torch.Tensor, grid: torch.Tensor) -> bool:
    """The kernels take this channels-last CPU map and grid: non-empty float32 or float64
    tensors in eager mode, numba available."""
    return (u.dtype in (torch.float32, torch.float64) and u.numel() > 0 and grid.numel() > 0
            and not _compiling() and available())


def sample_rows(u: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Sample a channels-last CPU map ``u`` ``(B, C, H, W)`` at a normalised ``grid``
    ``(B, H', W', 2)`` of ``u``'s dtype (bilinear, zero padding) -> a channels-last
    ``(B, C, H', W')``; raises ``RuntimeError`` where numba is missing."""
    rows = _import()
    if rows is None:
        raise RuntimeError("the numba sampler kernels need numba: pip install 'stnlab[cpu]'")
    return rows.NumbaRows.apply(u, grid)


__all__ = ["ENV_SWITCH", "available", "can_sample", "sample_rows"]
