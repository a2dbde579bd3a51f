"""Neural building blocks shared by GASP and VaMoH."""

from ._flows import FlowPrior, PlanarFlow, planar_flow, planar_flow_inverse
from ._point_conv import AvgPool, PointConv, WeightNet
from ._point_conv_net import LayerSpec, PointConvNet, VAMOH_ENCODERS, gasp_discriminator_specs, vamoh_encoder_specs

__all__ = [
    "PointConv",
    "AvgPool",
    "WeightNet",
    "PointConvNet",
    "LayerSpec",
    "VAMOH_ENCODERS",
    "gasp_discriminator_specs",
    "vamoh_encoder_specs",
    "PlanarFlow",
    "FlowPrior",
    "planar_flow",
    "planar_flow_inverse",
]
