"""Opt-in CPU speed-ups that change no result. The models in ``stnlab.models`` are plain
PyTorch; a run switches these on (``stnlab-train``: ``small_input_conv: true`` in
``conf/train.yaml``), a notebook calls them itself:

>>> from stnlab.cpu import use_small_input_conv
>>> use_small_input_conv(model)   # the first conv layers' input gradient by depthwise convs

The sampler's own CPU kernels (numba, the ``stnlab[cpu]`` extra) live in
``stnlab.spatial._cpu`` and need no switch.
"""

from .small_input_conv import SmallInputConv2d, SmallInputConv3d, use_small_input_conv

__all__ = ["SmallInputConv2d", "SmallInputConv3d", "use_small_input_conv"]
