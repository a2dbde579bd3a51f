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


def write_grib(path, values, lat, lon, dates, levels=None, short="2t"):
    """A GRIB2 file with one message per (date, level) of ``values[date, level, lat, lon]`` on the regular axes
    ``lat`` (either order) and ``lon`` (increasing), IEEE-packed so that values read back exactly; ``dates`` as
    ``YYYYMMDD`` integers (any order), at 12 UTC."""
    import eccodes

    sample = "regular_ll_sfc_grib2" if levels is None else "regular_ll_pl_grib2"
    lat, lon = np.asarray(lat, dtype=np.float64), np.asarray(lon, dtype=np.float64)
    with open(path, "wb") as f:
        for ti, date in enumerate(dates):
            for li, level in enumerate(levels or [None]):
                gid = eccodes.codes_grib_new_from_samples(sample)
                keys = dict(Ni=lon.size, Nj=lat.size, jScansPositively=int(lat[1] > lat[0]),
                            latitudeOfFirstGridPointInDegrees=lat[0], latitudeOfLastGridPointInDegrees=lat[-1],
                            longitudeOfFirstGridPointInDegrees=lon[0], longitudeOfLastGridPointInDegrees=lon[-1],
                            iDirectionIncrementInDegrees=abs(lon[1] - lon[0]),
                            jDirectionIncrementInDegrees=abs(lat[1] - lat[0]), dataDate=int(date), dataTime=1200)
                if level is not None:
                    keys["level"] = level
                for k, v in keys.items():
                    eccodes.codes_set(gid, k, v)
                eccodes.codes_set(gid, "shortName", short)
                eccodes.codes_set(gid, "packingType", "grid_ieee")
                eccodes.codes_set_values(gid, np.asarray(values[ti, li], dtype=np.float64).ravel())
                eccodes.codes_write(gid, f)
                eccodes.codes_release(gid)
    return path
