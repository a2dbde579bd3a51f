"""In-place forms of elementwise activations, for layers that own their fresh outputs."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["in_place"]


def in_place(activation: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """The in-place form of a common elementwise activation, else the activation itself. Applied to the fresh
    output of a linear layer, which nothing else reads (its backward needs the layer's inputs, not its
    output), it saves allocating, and keeping for the backward pass, one tensor per layer; on the CPU a large
    fresh tensor costs page faults too. Autograd differentiates these from their results."""
    kind = type(activation)
    if kind is torch.nn.LeakyReLU and activation.negative_slope >= 0 and not activation.inplace:
        slope = activation.negative_slope
        return lambda h: F.leaky_relu_(h, slope)
    if kind is torch.nn.ReLU:
        return torch.relu_
    if kind is torch.nn.Tanh:
        return torch.tanh_
    if kind is torch.nn.Sigmoid:
        return torch.sigmoid_
    return activation
