"""fastconv: JIT-compiled (Numba) CPU convolution kernels with PyTorch and scipy.signal semantics."""
from ._config import get_num_threads, get_workspace_limit, set_num_threads, set_workspace_limit
from .conv import conv2d, sepconv2d
from .dispatch import algorithms
from .formulas import conv_flops, conv_output_shape, conv_params
from .signal import convolve2d, correlate2d

__version__ = "0.1.0"

__all__ = [
    "algorithms",
    "conv2d",
    "conv_flops",
    "conv_output_shape",
    "conv_params",
    "convolve2d",
    "correlate2d",
    "get_num_threads",
    "get_workspace_limit",
    "sepconv2d",
    "set_num_threads",
    "set_workspace_limit",
]
