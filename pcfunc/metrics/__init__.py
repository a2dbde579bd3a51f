"""Evaluation measures: reconstruction error (RMSE) and PSNR as defined in the VaMoH paper, area-weighted RMSE, bias
and MAE, and scores of probabilistic predictions (CRPS, the fair ensemble CRPS, interval coverage, spread-skill, rank
histograms, the calibration of predictive spreads)."""

from ._probabilistic import crps_ensemble, crps_gaussian, fit_std_scale, interval_coverage
from ._reconstruction import psnr, rmse
from ._scores import pit_histogram, rank_histogram, spread_skill, weighted_scores
from ._spectrum import log_spectral_distance, power_spectrum

__all__ = ["psnr", "rmse", "crps_gaussian", "crps_ensemble", "interval_coverage", "fit_std_scale", "weighted_scores",
           "spread_skill", "rank_histogram", "pit_histogram", "power_spectrum", "log_spectral_distance"]
