"""The models of the papers, built from :mod:`pcfunc.nn`: VaMoH (and its paper configurations)."""

from ._categorical import CategoricalNet
from ._configs import VAMOH_CONFIGS, vamoh_config
from ._points import point_dropout
from ._vamoh import ELBOTerms, VaMoH
from ._vamoh_inference import ComponentMaps, Predictive

__all__ = ["VaMoH", "ELBOTerms", "ComponentMaps", "Predictive", "CategoricalNet", "VAMOH_CONFIGS",
           "vamoh_config", "point_dropout"]
