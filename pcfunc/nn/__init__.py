"""Neural building blocks shared by GASP and VaMoH."""

from ._encodings import FourierFeatures, SphericalHarmonics, get_encoding, spherical_harmonics
from ._flows import FlowPrior, PlanarFlow, planar_flow, planar_flow_inverse
from ._function_representation import FunctionRepresentation
from ._hypernetwork import HyperNetwork, fit_function
from ._likelihood_math import (
    continuous_bernoulli_log_norm,
    continuous_bernoulli_mean,
    continuous_bernoulli_variance,
    discretized_logistic_log_prob,
    discretized_logistic_mixture_log_prob,
    mixture_log_prob,
    mixture_mean,
)
from ._likelihoods import (
    BernoulliLikelihood,
    ContinuousBernoulliLikelihood,
    DiscretizedLogisticLikelihood,
    GaussianLikelihood,
    Likelihood,
    get_likelihood,
)
from ._point_conv import AvgPool, CloudNorm, PointConv, WeightNet, norm_layer
from ._linear_factors import LinearFactors
from ._point_table import PointTable
from ._point_conv_net import LayerSpec, PointConvNet, VAMOH_ENCODERS, gasp_discriminator_specs, vamoh_encoder_specs

__all__ = [
    "PointConv",
    "AvgPool",
    "WeightNet",
    "norm_layer",
    "CloudNorm",
    "PointConvNet",
    "LayerSpec",
    "VAMOH_ENCODERS",
    "gasp_discriminator_specs",
    "vamoh_encoder_specs",
    "FourierFeatures",
    "PointTable",
    "LinearFactors",
    "SphericalHarmonics",
    "spherical_harmonics",
    "get_encoding",
    "FunctionRepresentation",
    "HyperNetwork",
    "fit_function",
    "PlanarFlow",
    "FlowPrior",
    "planar_flow",
    "planar_flow_inverse",
    "Likelihood",
    "BernoulliLikelihood",
    "ContinuousBernoulliLikelihood",
    "DiscretizedLogisticLikelihood",
    "GaussianLikelihood",
    "get_likelihood",
    "discretized_logistic_log_prob",
    "discretized_logistic_mixture_log_prob",
    "continuous_bernoulli_log_norm",
    "continuous_bernoulli_mean",
    "continuous_bernoulli_variance",
    "mixture_log_prob",
    "mixture_mean",
]
