"""The maps of a model's tasks on one field of a lat/lon grid: truth, input, reconstruction, super-resolution
next to a baseline with both errors, the spread, in-painting, and the mixture's entropy and segmentation."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from ._maps import Panel, plot_panels

__all__ = ["plot_task_maps", "grid_spacing"]


def grid_spacing(lat: Any) -> str:
    """A grid's latitude spacing in degrees for names and titles (``"4"``, ``"0.25"``, ``"4.09"``)."""
    lat = np.asarray(lat, dtype=np.float64)
    return f"{round(abs(float(lat[0] - lat[1])), 2):g}" if len(lat) > 1 else "1-row"


def plot_task_maps(path: Union[str, Path], coarse: Any, fine: Any, *, truth: Tensor, observed: Tensor,
                   reconstruction: Tensor, super_resolution: Tensor, baseline: Tensor, spread: Tensor,
                   inpainted: Mapping[str, Tuple[Tensor, Tensor]], entropy: Optional[Tensor] = None,
                   segmentation: Optional[Tensor] = None, num_components: Optional[int] = None, label: str = "",
                   units: str = "", title: str = "", model: str = "VaMoH",
                   baseline_title: str = "bilinear + mean sub-grid residual",
                   attribution: Optional[str] = None) -> None:
    """One figure of a field's tasks, four maps a row: the truth on the fine grid, the coarse input and its
    reconstruction; the super-resolution, the baseline and both errors on a shared symmetric scale (the 99th
    percentile of their magnitudes); the spread of the super-resolved function; each in-painting task (the input
    with its hidden cells greyed, and the prediction); the mixture's entropy and segmentation.

    Args:
        path: The PNG file.
        coarse (LatLonGrid): The grid of the input (``to_array``, ``lat``, ``lon``).
        fine (LatLonGrid): The finer grid of the truth and the super-resolution.
        truth, super_resolution, baseline, spread (Tensor): Values at ``fine``'s points, :math:`(N_f,)` or
            :math:`(N_f, 1)`, in physical units (missing values NaN).
        observed, reconstruction (Tensor): Values at ``coarse``'s points.
        inpainted (dict): ``{title: (prediction at coarse's points, bool mask of the observed points)}``.
        entropy, segmentation (Tensor, optional): Per coarse point (NaN where missing).
        num_components (int, optional): Classes of the segmentation.
        label, units, title (str): Colour-bar label of the values, their units (errors and spread), the figure's
            title.
        model, baseline_title (str): Names in the panel titles.
        attribution (str, optional): A line under the figure (e.g. the data's licence).
    """
    def arr(grid: Any, v: Tensor) -> np.ndarray:
        return grid.to_array(torch.as_tensor(v).reshape(-1, 1).float())[..., 0].numpy()

    flat = lambda v: torch.as_tensor(v).reshape(-1).double()  # noqa: E731
    err_sr, err_base = flat(super_resolution) - flat(truth), flat(baseline) - flat(truth)
    both = torch.cat([err_sr, err_base]).abs()
    emax = float(both[~torch.isnan(both)].quantile(0.99)) if bool((~torch.isnan(both)).any()) else 1.0
    err = dict(label=f"error [{units}]", scale_group="error", cmap="RdBu_r", vmin=-emax, vmax=emax)
    cd, fd = f"{grid_spacing(coarse.lat)}°", f"{grid_spacing(fine.lat)}°"
    on_coarse = dict(lat=coarse.lat, lon=coarse.lon)
    panels = [
        Panel(arr(fine, truth), f"truth ({fd})", label=label),
        Panel(arr(coarse, observed), f"input ({cd})", label=label, **on_coarse),
        Panel(arr(coarse, reconstruction), f"reconstruction ({cd})", label=label, **on_coarse),
        Panel(arr(fine, super_resolution), f"{model} super-resolution ({fd})", label=label),
        Panel(arr(fine, baseline), f"{baseline_title} ({fd})", label=label),
        Panel(arr(fine, err_sr), f"{model} super-resolution − truth", **err),
        Panel(arr(fine, err_base), f"{baseline_title} − truth", **err),
        Panel(arr(fine, spread), "super-resolution: spread of the inferred function", label=f"std [{units}]",
              scale_group=None, cmap="magma"),
    ]
    for name, (pred, mask) in inpainted.items():
        hidden = arr(coarse, mask.float()) > 0.5
        panels.append(Panel(arr(coarse, observed), f"input: {name} hidden", mask=hidden, label=label, **on_coarse))
        panels.append(Panel(arr(coarse, pred), f"in-painted: {name}", label=label, **on_coarse))
    if entropy is not None:
        panels.append(Panel(arr(coarse, entropy), "entropy of q(c | x, y, z)", label="nats", scale_group=None,
                            cmap="viridis", **on_coarse))
    if segmentation is not None:
        panels.append(Panel(arr(coarse, segmentation), "segmentation (argmax q(c))", categorical=True,
                            num_categories=num_components, cmap="tab10", **on_coarse))
    plot_panels(panels, fine.lat, fine.lon, path, ncols=4, suptitle=title, attribution=attribution)
