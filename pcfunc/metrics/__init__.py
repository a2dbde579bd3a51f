"""Evaluation measures: reconstruction error (RMSE) and PSNR as defined in the VaMoH paper, and scores of
probabilistic predictions (CRPS, interval coverage, the calibration of predictive spreads)."""

from ._probabilistic import crps_ensemble, crps_gaussian, fit_std_scale, interval_coverage
from ._reconstruction import psnr, rmse

__all__ = ["psnr", "rmse", "crps_gaussian", "crps_ensemble", "interval_coverage", "fit_std_scale"]
