"""Optional CPU kernels (numba) of the sampler, for channels-last feature maps: what the CNNs
hand a spatial transformer on the CPU. Installed with ``pip install "stnlab[cpu]"`` (``make
install`` does); nothing else in stnlab needs numba.

``kernels.py`` holds the numba code (bilinear sampling, zero padding, as rows of the map's
``(B*H*W, C)`` view), ``rows.py`` its autograd function. Without numba, or with the environment
variable ``STNLAB_NUMBA=0``, ``stnlab.spatial.rows_sampling`` samples the same maps in pure
PyTorch (``embedding_bag``): the same values and gradients up to float rounding (tested), about
4x slower forward + backward on ST-CNN Multi's 32-channel 32x32 map
(``benchmarks/bench_sampler.py``).
"""

from __future__ import annotations

import functools
import os
import warnings
from types import ModuleType

ENV_SWITCH = "STNLAB_NUMBA"


@functools.cache
def _import() -> ModuleType | None:
    try:
        from . import rows
    except ImportError:  # numba is not installed: the pure-PyTorch path, silently
        return None
    except RuntimeError as err:  # numba is installed but cannot run, e.g. no cache folder
        warnings.warn(f"stnlab's numba sampler kernels are unavailable ({err}); sampling "
                      "channels-last maps takes the pure-PyTorch path (set NUMBA_CACHE_DIR to "
                      "a writable folder)", RuntimeWarning, stacklevel=3)
        return None
    return rows


def load(respect_switch: bool = True) -> ModuleType | None:
    """The kernels' autograd module (``rows``), or ``None`` where numba is missing or, with
    ``respect_switch``, ``STNLAB_NUMBA=0`` is set. numba is imported on the first call."""
    if respect_switch and os.environ.get(ENV_SWITCH, "1") == "0":
        return None
    return _import()


__all__ = ["ENV_SWITCH", "load"]
