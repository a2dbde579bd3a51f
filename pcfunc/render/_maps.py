"""Fields on latitude/longitude grids drawn as maps, one or many panels per figure."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ._map_fields import ArrayLike, _Field, _prepare

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.collections import QuadMesh
    from matplotlib.colors import Colormap
    from matplotlib.figure import Figure

__all__ = ["Panel", "plot_map", "plot_panels"]

CmapLike = Union[str, "Colormap"]

#: Colour and opacity of the layer over unobserved cells (gid ``"mask"``).
_MASK_RGB = (0.6, 0.6, 0.6)
_MASK_ALPHA = 0.85
#: Inches per panel column, and the height of a panel beyond its 2:1 map (title, ticks, colour bar).
_PANEL_WIDTH, _PANEL_EXTRA = 4.2, 0.9


@dataclass
class Panel:
    """One map of a :func:`plot_panels` figure; a dict with these keys works as well.

    Attributes:
        values (Tensor or numpy.ndarray): The field, shape ``[n_lat, n_lon]`` of the panel's axes.
        title (str): Panel title.
        mask (Tensor or numpy.ndarray, optional): Boolean ``[n_lat, n_lon]``, ``True`` where observed; the
            other cells are greyed out.
        cmap (str or Colormap, optional): Colormap; default: the ``cmap`` of :func:`plot_panels`.
        vmin (float, optional): Lower end of the colour range, overriding the shared one for this panel.
        vmax (float, optional): Upper end of the colour range, overriding the shared one for this panel.
        label (str): Colour-bar label, e.g. ``"t2m [K]"``.
        categorical (bool): Class indices (a segmentation map): a discrete colormap and integer ticks.
        num_categories (int, optional): Number of classes; default: the largest index plus one.
        scale_group (str, optional): Panels of one group share their colour range (see
            :func:`plot_panels`); ``None``: a range of its own. Categorical panels never share.
        lat (array, optional): Latitudes of this panel, overriding those given to :func:`plot_panels`.
        lon (array, optional): Longitudes of this panel, overriding those given to :func:`plot_panels`.
    """

    values: ArrayLike
    title: str = ""
    mask: Optional[ArrayLike] = None
    cmap: Optional[CmapLike] = None
    vmin: Optional[float] = None
    vmax: Optional[float] = None
    label: str = ""
    categorical: bool = False
    num_categories: Optional[int] = None
    scale_group: Optional[str] = "value"
    lat: Optional[ArrayLike] = None
    lon: Optional[ArrayLike] = None


def _degrees(axis: str):
    """Tick formatter: 120°W, 0°, 60°E (longitudes wrapped to (-180, 180]) or 30°S, 0°, 60°N."""

    def fmt(t: float, _pos: Any = None) -> str:
        if axis == "lon":
            t = float(np.mod(t + 180.0, 360.0) - 180.0)
            t = 180.0 if t == -180.0 else t
            hemi = "E" if t > 0 and t != 180.0 else ("W" if t < 0 else "")
        else:
            hemi = "N" if t > 0 else ("S" if t < 0 else "")
        return f"{abs(t):g}°{hemi}"

    return fmt


def _locator(span: float, step: float):
    from matplotlib.ticker import MaxNLocator, MultipleLocator

    # Ticks every `step` degrees; a small region gets finer, round ones.
    return MultipleLocator(step) if span >= 2 * step else MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10])


def _categories(f: _Field, categorical: bool, num_categories: Optional[int]) -> Optional[int]:
    """The number of classes of a categorical field (default: the largest observed index plus one), else None."""
    if not categorical:
        return None
    if num_categories is None:
        return int(np.floor(f.observed.max())) + 1 if f.observed.size else 1
    if isinstance(num_categories, bool) or not isinstance(num_categories, (int, np.integer)) or num_categories < 1:
        raise ValueError(f"num_categories must be a positive integer, got {num_categories!r}")
    return int(num_categories)


def _draw(ax: "Axes", f: _Field, cmap: CmapLike, vmin: Optional[float], vmax: Optional[float], title: str,
          label: str, num_categories: Optional[int], colorbar: bool) -> "QuadMesh":
    """Draw a prepared field; ``num_categories`` (from :func:`_categories`) makes it categorical."""
    import matplotlib
    from matplotlib.colors import BoundaryNorm, ListedColormap, Normalize
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    base = matplotlib.colormaps.get_cmap(cmap)
    if num_categories is not None:
        K = num_categories
        if isinstance(base, ListedColormap) and base.N <= 20 and K <= base.N:  # qualitative: its first colours
            colours = base(np.arange(K))
        else:
            colours = base(np.linspace(0.0, 1.0, K) if K > 1 else [0.5])
        cm, norm = ListedColormap(colours, name=f"{base.name}_{K}"), BoundaryNorm(np.arange(K + 1) - 0.5, K)
    else:
        lo = float(vmin) if vmin is not None else (float(f.observed.min()) if f.observed.size else 0.0)
        hi = float(vmax) if vmax is not None else (float(f.observed.max()) if f.observed.size else 1.0)
        cm, norm = base, Normalize(lo, hi)
    mesh = ax.pcolormesh(f.x, f.y, f.values, cmap=cm, norm=norm, shading="flat")
    if f.hidden is not None and f.hidden.any():
        grey = np.ma.masked_array(np.ones(f.hidden.shape), mask=~f.hidden)
        overlay = ax.pcolormesh(f.x, f.y, grey, cmap=ListedColormap([_MASK_RGB]), vmin=0.0, vmax=2.0,
                                alpha=_MASK_ALPHA, shading="flat")
        overlay.set_gid("mask")
    ax.set_xlim(*f.xlim)
    ax.set_ylim(float(f.y[0]), float(f.y[-1]))
    ax.set_aspect("equal")
    ax.xaxis.set_major_locator(_locator(f.xlim[1] - f.xlim[0], 60.0))
    ax.yaxis.set_major_locator(_locator(float(f.y[-1] - f.y[0]), 30.0))
    ax.xaxis.set_major_formatter(FuncFormatter(_degrees("lon")))
    ax.yaxis.set_major_formatter(FuncFormatter(_degrees("lat")))
    ax.tick_params(labelsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    if colorbar:
        cb = ax.figure.colorbar(mesh, ax=ax, orientation="horizontal", fraction=0.08, pad=0.1, aspect=35)
        if num_categories is not None:
            cb.set_ticks(np.arange(K) if K <= 20 else MaxNLocator(integer=True))
        cb.ax.tick_params(labelsize=8)
        if label:
            cb.set_label(label, fontsize=9)
    return mesh


def _figure(size: Tuple[float, float], dpi: float) -> "Figure":
    """A figure on the Agg canvas, not registered with pyplot (nothing to close, any backend); the "compressed"
    layout keeps titles and colour bars of fixed-aspect maps inside the figure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=dpi, layout="compressed")
    FigureCanvasAgg(fig)
    return fig


def plot_map(
    values: ArrayLike,
    lat: ArrayLike,
    lon: ArrayLike,
    ax: Optional["Axes"] = None,
    *,
    cmap: CmapLike = "turbo",
    vmin: Optional[float] = None,
    vmax: Optional[float] = None,
    mask: Optional[ArrayLike] = None,
    title: str = "",
    label: str = "",
    categorical: bool = False,
    num_categories: Optional[int] = None,
    colorbar: bool = True,
) -> "QuadMesh":
    r"""Draw a field on a latitude/longitude grid as an equirectangular map.

    The x axis is longitude re-centred to -180..180 (west to east), the y axis latitude (north up), in
    degrees at equal scale; ticks every 60° of longitude and 30° of latitude. Each value fills its cell,
    whose edges lie halfway between neighbouring centres (the outer latitude edges half a step beyond,
    within ±90). A global longitude axis is periodic: the cell across the antimeridian is cut there and its
    halves drawn at both sides of the map. A regional axis (one gap much wider than the other steps) is
    drawn over its own extent, past 180 if it crosses the antimeridian.

    Args:
        values (Tensor or numpy.ndarray): The field, one value per (latitude, longitude); NaN cells are left
            blank.
        lat (array): Latitudes in degrees, strictly monotone (north-first or south-first), in [-90, 90].
        lon (array): Longitudes in degrees, distinct modulo 360, in any order (0..360 or -180..180).
        ax (matplotlib.axes.Axes, optional): Axes to draw into; default: a new figure (Agg canvas, not
            registered with pyplot), reached as ``mesh.axes.figure``.
        cmap (str or Colormap): Matplotlib colormap. (default: ``"turbo"``)
        vmin (float, optional): Lower end of the colour range; default: the smallest finite observed value.
        vmax (float, optional): Upper end of the colour range; default: the largest finite observed value.
        mask (Tensor or numpy.ndarray, optional): Boolean, ``True`` where observed: the other cells are
            covered by a semi-transparent grey layer (a second mesh with gid ``"mask"``), e.g. to show what
            an in-painting input hides. The default colour range uses the observed cells only.
        title (str): Axes title.
        label (str): Colour-bar label, e.g. ``"t2m [K]"``.
        categorical (bool): Values are class indices ``0 .. num_categories - 1`` (a segmentation map): a
            colormap of ``num_categories`` discrete colours (the first ones of a qualitative map such as
            ``"tab10"``, evenly spaced ones of a continuous map) and integer ticks; ``vmin``/``vmax`` are
            ignored. (default: ``False``)
        num_categories (int, optional): Number of classes; default: the largest observed index plus one.
        colorbar (bool): Add a horizontal colour bar below the map. (default: ``True``)

    Returns:
        matplotlib.collections.QuadMesh: The map's mesh. Its array has the rows south to north and the
        columns west to east, a column of a global grid possibly twice (both sides of the antimeridian).

    Shapes:
        - **values**: :math:`(n_\text{lat}, n_\text{lon})`
        - **lat**: :math:`(n_\text{lat},)`, **lon**: :math:`(n_\text{lon},)`
        - **mask**: :math:`(n_\text{lat}, n_\text{lon})`, boolean

    Raises:
        ValueError: ``values`` is not 2-D, its shape is not ``(len(lat), len(lon))``, ``mask`` has another
            shape, or an axis is invalid (empty, not monotone, repeated longitudes, non-finite).
        TypeError: ``mask`` is not boolean, or ``values`` is not real-valued.
    """
    field = _prepare(values, lat, lon, mask)
    K = _categories(field, categorical, num_categories)
    if ax is None:
        ax = _figure((_PANEL_WIDTH * 1.5, _PANEL_WIDTH * 0.75 + _PANEL_EXTRA), 100).subplots()
    return _draw(ax, field, cmap, vmin, vmax, title, label, K, colorbar)


_PANEL_KEYS = tuple(f.name for f in fields(Panel))


def _as_panels(panels: Sequence[Union[Panel, Mapping[str, Any]]]) -> List[Panel]:
    if isinstance(panels, (Panel, Mapping, str, bytes)) or not isinstance(panels, Sequence):
        raise TypeError(f"panels must be a sequence of Panel or dict, got {type(panels).__name__}")
    if len(panels) == 0:
        raise ValueError("panels must contain at least one panel")
    out = []
    for i, p in enumerate(panels):
        if isinstance(p, Panel):
            out.append(p)
        elif isinstance(p, Mapping):
            unknown = sorted(map(str, set(p) - set(_PANEL_KEYS)))
            if unknown:
                raise TypeError(f"panels[{i}] has unknown keys {unknown}; allowed: {list(_PANEL_KEYS)}")
            if "values" not in p:
                raise TypeError(f"panels[{i}] has no 'values'")
            out.append(Panel(**p))
        else:
            raise TypeError(f"panels[{i}] must be a Panel or a dict, got {type(p).__name__}")
    return out


def plot_panels(
    panels: Sequence[Union[Panel, Mapping[str, Any]]],
    lat: Optional[ArrayLike],
    lon: Optional[ArrayLike],
    out: Optional[Union[str, Path]] = None,
    *,
    ncols: Optional[int] = None,
    cmap: CmapLike = "turbo",
    shared_scale: bool = True,
    suptitle: str = "",
    dpi: float = 100,
    attribution: Optional[str] = None,
) -> "Figure":
    r"""A figure of equirectangular maps (see :func:`plot_map`) on a grid, optionally saved as a PNG.

    With ``shared_scale``, the panels of one ``scale_group`` (default ``"value"``) share a colour range:
    the smallest and largest finite values over all of them (observed cells only where a panel has a
    mask), so that truth, reconstruction and super-resolution are comparable. Give an uncertainty (std) or
    entropy panel a group of its own, e.g. ``scale_group="std"``, or ``None`` for a range of its own; a
    panel's own ``vmin``/``vmax`` override the shared range, and categorical panels (segmentation maps)
    always use their classes. Each panel may have its own ``lat``/``lon`` (e.g. a 4° input next to a 1°
    truth); the others use the axes given here.

    Args:
        panels (sequence of Panel or dict): The maps, row by row; a dict takes the fields of :class:`Panel`.
        lat (array, optional): Latitudes (degrees) of the panels without their own.
        lon (array, optional): Longitudes (degrees) of the panels without their own.
        out (str or Path, optional): PNG to write (parent folders are created).
        ncols (int, optional): Panels per row; default: up to 4, rows filled evenly.
        cmap (str or Colormap): Colormap of the panels without their own. (default: ``"turbo"``)
        shared_scale (bool): Share colour ranges within each ``scale_group``. (default: ``True``)
        suptitle (str): Figure title.
        dpi (float): Pixels per inch of the figure and the PNG. (default: ``100``)
        attribution (str, optional): Small text at the bottom, e.g. the data licence line (ERA5: CC-BY 4.0).

    Returns:
        matplotlib.figure.Figure: The figure (Agg canvas, not registered with pyplot, so nothing stays
        open after saving); ``fig.axes[:len(panels)]`` are the maps, in panel order. The PNG is
        ``fig.get_size_inches() * dpi`` pixels.

    Shapes:
        - **panel values** and **mask**: :math:`(n_\text{lat}, n_\text{lon})` of the panel's axes

    Raises:
        ValueError: ``panels`` is empty, a panel's arrays do not fit its axes (see :func:`plot_map`), a panel
            has no axes, or ``ncols``/``dpi`` is not positive.
        TypeError: ``panels`` is not a sequence of Panel or dict, or a dict has unknown keys or no
            ``values``.
    """
    items = _as_panels(panels)
    n = len(items)
    if ncols is None:
        ncols = n if n <= 4 else math.ceil(n / math.ceil(n / 4))
    if isinstance(ncols, bool) or not isinstance(ncols, int) or ncols < 1:
        raise ValueError(f"ncols must be a positive integer, got {ncols!r}")
    if not dpi > 0:
        raise ValueError(f"dpi must be positive, got {dpi!r}")
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    prepared = []
    for i, p in enumerate(items):
        p_lat = p.lat if p.lat is not None else lat
        p_lon = p.lon if p.lon is not None else lon
        if p_lat is None or p_lon is None:
            raise ValueError(f"panels[{i}] has no lat/lon: pass them to plot_panels or set the panel's own")
        try:
            f = _prepare(p.values, p_lat, p_lon, p.mask)
            prepared.append((f, _categories(f, p.categorical, p.num_categories)))
        except (TypeError, ValueError) as e:
            raise type(e)(f"panels[{i}]: {e}") from None
    # Colour range of each scale group: over the finite observed values of all its panels.
    ranges = {}
    if shared_scale:
        for p, (f, K) in zip(items, prepared):
            if p.scale_group is None or K is not None or not f.observed.size:
                continue
            lo, hi = float(f.observed.min()), float(f.observed.max())
            old = ranges.get(p.scale_group, (lo, hi))
            ranges[p.scale_group] = (min(old[0], lo), max(old[1], hi))
    height = _PANEL_WIDTH / 2 + _PANEL_EXTRA
    fig = _figure((ncols * _PANEL_WIDTH, nrows * height + (0.4 if suptitle else 0) + (0.3 if attribution else 0)),
                  dpi)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.remove()
    for ax, p, (f, K) in zip(axes, items, prepared):
        shared = ranges.get(p.scale_group, (None, None))
        vmin = p.vmin if p.vmin is not None else shared[0]
        vmax = p.vmax if p.vmax is not None else shared[1]
        _draw(ax, f, p.cmap if p.cmap is not None else cmap, vmin, vmax, p.title, p.label, K, True)
    if suptitle:
        fig.suptitle(suptitle, fontsize=12)
    if attribution:
        fig.supxlabel(attribution, fontsize=7, color="0.35")
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=dpi, format="png")
    return fig
