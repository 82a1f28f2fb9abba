"""fastconv: JIT-compiled (Numba) CPU convolution kernels with PyTorch and scipy.signal semantics."""
from ._config import get_num_threads, get_workspace_limit, set_num_threads, set_workspace_limit
from .conv import conv2d, sepconv2d
from .dispatch import algorithms
from .formulas import conv_flops, conv_output_shape, conv_params
from .gradients import conv2d_backward, conv_transpose2d
from .pooling import (
    avg_pool2d,
    avg_pool2d_backward,
    lp_pool2d,
    lp_pool2d_backward,
    max_pool2d,
    max_pool2d_backward,
)

__version__ = "0.1.0"

__all__ = [
    "algorithms",
    "avg_pool2d",
    "avg_pool2d_backward",
    "conv2d",
    "conv2d_backward",
    "conv_flops",
    "conv_output_shape",
    "conv_params",
    "conv_transpose2d",
    "get_num_threads",
    "get_workspace_limit",
    "lp_pool2d",
    "lp_pool2d_backward",
    "max_pool2d",
    "max_pool2d_backward",
    "sepconv2d",
    "set_num_threads",
    "set_workspace_limit",
]
