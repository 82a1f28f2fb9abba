"""Late lookup of fastconv's compiled conv/pool entry points.

Layers call ``fastconv.conv2d_backward`` and the pooling functions through here so that a fastconv
build without them still imports ``fastconv.nn`` and fails, when such a layer is used, with an error
that names the missing function instead of an ImportError at import time.
"""
from __future__ import annotations

import importlib


def kernel(name: str):
    fastconv = importlib.import_module("fastconv")
    function = getattr(fastconv, name, None)
    if function is None:
        raise ValueError(
            f"this fastconv build has no fastconv.{name}, which this layer needs for its "
            "forward/backward pass"
        )
    return function
