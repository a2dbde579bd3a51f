"""Quality measured, not assumed: the papers' tasks on held-out fields next to the baselines a sceptical reader
tries first (training mean, PCA with as many components as the latent, zonal mean, bilinear interpolation),
the calibration of predictive intervals, and a model's health figures (active latent dimensions, mixture
usage, sample spread, energy distance). Missing values (NaN) in the fields are never observed or scored."""

from ._baselines import BilinearDownscaling, PCABaseline, observed_mask, training_mean, valid_points, zonal_mean_fill
from ._harness import evaluate_gasp, evaluate_vamoh
from ._points import points_batch, refine_steps_for
from ._scoring import format_report, score
from ._health import active_units, energy_distance, mixture_usage, nearest_neighbor_accuracy, sample_statistics
from ._kriging import Covariance, ResidualKriging, kriging_weights
from ._mos import OutputStatistics
from ._tasks import NORTH_AMERICA, choose_refine_steps, flat_report, inpainting_masks, task_predictions
from ._uncertainty import evaluate_uncertainty

__all__ = ["training_mean", "PCABaseline", "ResidualKriging", "Covariance", "kriging_weights", "zonal_mean_fill",
           "observed_mask", "active_units", "mixture_usage", "energy_distance", "nearest_neighbor_accuracy",
           "sample_statistics", "score", "evaluate_vamoh", "evaluate_gasp", "format_report", "evaluate_uncertainty",
           "BilinearDownscaling", "valid_points", "points_batch", "refine_steps_for", "inpainting_masks",
           "choose_refine_steps", "flat_report", "NORTH_AMERICA", "OutputStatistics", "task_predictions"]
