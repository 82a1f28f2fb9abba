"""fastconv: JIT-compiled (Numba) CPU convolution kernels with PyTorch and scipy.signal semantics."""
from ._config import get_num_threads, get_workspace_limit, set_num_threads, set_workspace_limit
from .conv import conv1d, conv2d, conv3d, sepconv2d
from .dispatch import algorithms, explain, get_autotune, set_autotune
from .formulas import conv_flops, conv_output_shape, conv_params
from .gradients import (
    conv1d_backward,
    conv2d_backward,
    conv3d_backward,
    conv_transpose1d,
    conv_transpose2d,
    conv_transpose3d,
)
from .local import local_conv2d, local_conv2d_backward, tiled_conv2d, tiled_conv2d_backward
from .pooling import (
    avg_pool1d,
    avg_pool1d_backward,
    avg_pool2d,
    avg_pool2d_backward,
    lp_pool2d,
    lp_pool2d_backward,
    max_pool1d,
    max_pool1d_backward,
    max_pool2d,
    max_pool2d_backward,
)
from .pooling3d import avg_pool3d, avg_pool3d_backward, max_pool3d, max_pool3d_backward
from .receptive_field import receptive_field
from .signal import convolve2d, correlate2d
from .signal_nd import choose_conv_method, convolve, correlate, fftconvolve, oaconvolve
from .weighted_pooling import weighted_avg_pool2d, weighted_avg_pool2d_backward

__version__ = "0.1.0"

__all__ = [
    "algorithms",
    "avg_pool1d",
    "avg_pool1d_backward",
    "avg_pool2d",
    "avg_pool2d_backward",
    "avg_pool3d",
    "avg_pool3d_backward",
    "choose_conv_method",
    "conv1d",
    "conv1d_backward",
    "conv2d",
    "conv2d_backward",
    "conv3d",
    "conv3d_backward",
    "conv_flops",
    "conv_output_shape",
    "conv_params",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "convolve",
    "convolve2d",
    "correlate",
    "correlate2d",
    "explain",
    "fftconvolve",
    "get_autotune",
    "get_num_threads",
    "get_workspace_limit",
    "local_conv2d",
    "local_conv2d_backward",
    "lp_pool2d",
    "lp_pool2d_backward",
    "max_pool1d",
    "max_pool1d_backward",
    "max_pool2d",
    "max_pool2d_backward",
    "max_pool3d",
    "max_pool3d_backward",
    "oaconvolve",
    "receptive_field",
    "sepconv2d",
    "set_autotune",
    "set_num_threads",
    "set_workspace_limit",
    "tiled_conv2d",
    "tiled_conv2d_backward",
    "weighted_avg_pool2d",
    "weighted_avg_pool2d_backward",
]
