"""Evaluation measures: reconstruction error (RMSE) and PSNR as defined in the VaMoH paper."""

from ._reconstruction import psnr, rmse

__all__ = ["psnr", "rmse"]
