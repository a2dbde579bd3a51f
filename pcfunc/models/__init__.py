"""The models of the papers, built from :mod:`pcfunc.nn`: VaMoH and GASP, and their paper configurations."""

from ._categorical import CategoricalNet
from ._configs import VAMOH_CONFIGS, vamoh_config
from ._gasp import (GASP, GASP_CONFIGS, GASPTerms, gan_discriminator_loss, gan_generator_loss, gasp_config,
                    random_subset)
from ._points import point_dropout
from ._vamoh import ELBOTerms, VaMoH
from ._vamoh_inference import ComponentMaps, Predictive

__all__ = ["VaMoH", "ELBOTerms", "ComponentMaps", "Predictive", "CategoricalNet", "VAMOH_CONFIGS",
           "vamoh_config", "point_dropout", "GASP", "GASPTerms", "GASP_CONFIGS", "gasp_config",
           "gan_discriminator_loss", "gan_generator_loss", "random_subset"]
