"""A small synthetic temperature field on a 13 x 24 lat/lon grid and its 7 x 12 subsample, for tests of fine
supervision."""

import numpy as np

from pcfunc.data import ERA5Field, MinMaxNormalizer


def fine_and_coarse(steps: int):
    """``(fine, coarse, normalizer)``: ``steps`` fields at 15 degrees, every other row and column of them, and
    the normalizer fitted on the coarse ones."""
    lat, lon = np.linspace(90, -90, 13), np.arange(24) * 15.0
    t = np.arange(steps).astype("datetime64[h]")
    vals = (280 + 10 * np.cos(np.deg2rad(lat))[None, :, None]
            * np.sin(np.deg2rad(lon) + np.arange(steps)[:, None, None])).astype(np.float32)
    fine = ERA5Field(vals, lat, lon, t, "t2m", "K")
    coarse = fine.regrid(lat[::2], lon[::2])
    return fine, coarse, MinMaxNormalizer.fit(coarse)
