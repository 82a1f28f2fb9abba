"""fastconv.nn: a tiny NumPy training framework (the course notes' layer protocol) whose conv and
pooling layers run on fastconv's compiled kernels.

Every layer has ``forward(x)``, ``backward(grad_out)`` (returns the gradient for the layer below),
``zero_grad()`` and ``update(lr)``; parameters are ``weights`` / ``bias`` with gradients ``grad_w`` /
``grad_b``.  Layers written by users to the same protocol mix freely with these.
"""
from .activations import ReLU, Sigmoid, Tanh
from .layers import BatchNorm2D, Conv1D, Conv2D, Conv3D, Dropout, Flatten, Linear
from .local_layers import LocallyConnected2D, TiledConv2D, WeightedAvgPool2D
from .losses import SoftmaxCrossEntropy
from .models import lenet5
from .module import Layer, Module, Sequential, iter_parameters
from .optim import SGD, Adam, Optimizer
from .pooling import (
    AvgPool1D, AvgPool2D, AvgPool3D, LPPool2D, MaxPool1D, MaxPool2D, MaxPool3D, MaxPooling,
)

__all__ = [
    "Adam", "AvgPool1D", "AvgPool2D", "AvgPool3D", "BatchNorm2D", "Conv1D", "Conv2D", "Conv3D",
    "Dropout", "Flatten", "LPPool2D", "Layer", "Linear", "LocallyConnected2D", "MaxPool1D",
    "MaxPool2D", "MaxPool3D", "MaxPooling",
    "Module", "Optimizer", "ReLU", "SGD", "Sequential", "Sigmoid", "SoftmaxCrossEntropy", "Tanh",
    "TiledConv2D", "WeightedAvgPool2D", "iter_parameters", "lenet5",
]
