"""A learnable function stored as values at fixed points of a manifold (a table), interpolated anywhere."""

from __future__ import annotations

from collections import OrderedDict
from typing import Tuple

import torch
from torch import Tensor

from .._validation import check_positive_int

__all__ = ["PointTable"]


class PointTable(torch.nn.Module):
    r"""A learnable function stored as one value per **anchor point**, read anywhere by inverse squared distance
    interpolation of the :math:`k` nearest anchors.

    .. math::
        g(\mathbf x) = \sum_{i \in \mathcal N_k(\mathbf x)} w_i(\mathbf x)\, \mathbf v_i, \qquad
        w_i(\mathbf x) = \frac{\lVert \mathbf x - \mathbf a_i \rVert^{-2}}
        {\sum_{j \in \mathcal N_k(\mathbf x)} \lVert \mathbf x - \mathbf a_j \rVert^{-2}},

    with :math:`\mathcal N_k(\mathbf x)` the :math:`k` anchors :math:`\mathbf a_i` nearest to :math:`\mathbf x` in
    the ambient coordinates (:func:`pcfunc.ops.knn`, memory linear in the number of queries, any number of
    anchors). At an anchor the table returns its value (to float precision); between anchors it interpolates,
    continuously. Unlike an MLP, it holds detail at exactly the anchors' resolution, however fine, at a cost per
    query that does not grow with the table (one neighbour search and a gather): VaMoH uses it, on the regular
    grid of the data (``VaMoH(base_grid=...)``), for what every field shares at full resolution (the mean's
    coastlines and orography).

    Args:
        anchors (Tensor): The anchor points :math:`(M, D)` (e.g. ``manifold.grid(resolution)``); a buffer, saved
            with the values.
        channels (int): Output channels :math:`C`.
        neighbors (int): Anchors :math:`k` each query reads. (default: ``4``, the corners of a grid cell)

    Shapes:
        - **input:** coordinates :math:`(*, D)`
        - **output:** values :math:`(*, C)`, in the values' dtype

    The values start at zero; set them by training, or with :meth:`fit_nearest_`.
    """

    anchors: Tensor

    def __init__(self, anchors: Tensor, channels: int, neighbors: int = 4) -> None:
        super().__init__()
        if not isinstance(anchors, Tensor) or anchors.dim() != 2 or anchors.size(0) == 0:
            shape = tuple(anchors.shape) if isinstance(anchors, Tensor) else type(anchors).__name__
            raise ValueError(f"anchors must be a non-empty tensor of shape [M, D], got {shape}")
        if not anchors.is_floating_point() or not bool(torch.isfinite(anchors).all()):
            raise ValueError("anchors must be finite floating-point coordinates")
        self.channels = check_positive_int(channels, "channels")
        self.neighbors = check_positive_int(neighbors, "neighbors")
        if self.neighbors > anchors.size(0):
            raise ValueError(f"neighbors={self.neighbors} is more than the {anchors.size(0)} anchors")
        self.register_buffer("anchors", anchors.detach().clone())
        self.values = torch.nn.Parameter(torch.zeros(anchors.size(0), self.channels, dtype=anchors.dtype,
                                                     device=anchors.device))
        self._recent: "OrderedDict[Tuple, Tuple[Tensor, Tensor, Tensor]]" = OrderedDict()  # key: (queries, index, w)

    #: How many of the most recent query tensors keep their neighbours (every chunk of points a decoding visits).
    RECENT = 32
    #: The most queries whose neighbours are kept, all tensors together (about 16 bytes per query and neighbour).
    RECENT_ROWS = 1 << 20

    def __getstate__(self) -> dict:
        return {**super().__getstate__(), "_recent": OrderedDict()}  # cached neighbours are not part of the model

    @property
    def num_anchors(self) -> int:
        return int(self.anchors.size(0))

    @torch.no_grad()
    def interpolation(self, pos: Tensor) -> Tuple[Tensor, Tensor]:
        r"""The anchors each query reads and their weights, each :math:`(N, k)`, for coordinates :math:`(N, D)`.

        The answers to the last :attr:`RECENT` query tensors (at most :attr:`RECENT_ROWS` queries) are kept: the same query tensor again (the same
        memory, unchanged since: e.g. each chunk of the points every posterior draw of :meth:`VaMoH.predictive
        <pcfunc.models.VaMoH.predictive>` is decoded at) reuses its answer instead of searching the neighbours
        again. The queries are held while their answer is kept, so their memory cannot be reused by another
        tensor meanwhile."""
        from ..ops import knn

        # Inference tensors (torch.inference_mode) keep no version counter: never cached.
        key = None if pos.is_inference() or self.anchors.is_inference() else (
            pos.untyped_storage().data_ptr(), pos.storage_offset(), tuple(pos.shape), pos.stride(), pos.dtype,
            pos.device, pos._version, self.anchors.data_ptr(), self.anchors._version)
        recent = self.__dict__.setdefault("_recent", OrderedDict())
        if key is not None and key in recent:
            recent.move_to_end(key)
            return recent[key][1], recent[key][2]
        q = pos.to(self.anchors.dtype)
        index = knn(self.anchors, q, self.neighbors, p=2)[1].view(-1, self.neighbors)
        w = 1.0 / (q.unsqueeze(1) - self.anchors[index]).pow(2).sum(-1).clamp_min(1e-24)
        w = w / w.sum(-1, keepdim=True)
        if key is not None and pos.size(0) <= self.RECENT_ROWS:
            recent[key] = (pos, index, w)
            while len(recent) > self.RECENT or sum(v[1].size(0) for v in recent.values()) > self.RECENT_ROWS:
                recent.popitem(last=False)
        return index, w

    def forward(self, pos: Tensor) -> Tensor:
        if not isinstance(pos, Tensor) or pos.dim() < 1 or pos.size(-1) != self.anchors.size(-1):
            shape = tuple(pos.shape) if isinstance(pos, Tensor) else type(pos).__name__
            raise ValueError(f"pos must have shape [..., {self.anchors.size(-1)}], got {shape}")
        flat = pos.reshape(-1, pos.size(-1))
        if flat.size(0) == 0:
            return self.values.new_zeros(*pos.shape[:-1], self.channels)
        index, w = self.interpolation(flat)
        out = (self.values[index] * w.unsqueeze(-1).to(self.values.dtype)).sum(1)
        return out.view(*pos.shape[:-1], self.channels)

    @torch.no_grad()
    def fit_nearest_(self, pos: Tensor, values: Tensor) -> Tensor:
        r"""Set each anchor's value to the mean of the ``values`` whose nearest anchor it is; anchors that are no
        point's nearest keep theirs. When the points are the anchors themselves (e.g. every training field on the
        table's grid), the table then returns their mean exactly at each anchor.

        Args:
            pos (Tensor): Coordinates :math:`(N, D)` (points may repeat).
            values (Tensor): Their values :math:`(N, C)`.

        Returns:
            Tensor: Which anchors were set, a boolean mask :math:`(M,)`.
        """
        if not (isinstance(pos, Tensor) and isinstance(values, Tensor)) or pos.dim() != 2 \
                or pos.size(-1) != self.anchors.size(-1) or values.shape != (pos.size(0), self.channels):
            raise ValueError(f"pos and values must have shapes [N, {self.anchors.size(-1)}] and [N, {self.channels}],"
                             f" got {tuple(getattr(pos, 'shape', ()))} and {tuple(getattr(values, 'shape', ()))}")
        from ..ops import knn

        nearest = knn(self.anchors, pos.to(self.anchors.dtype), 1, p=2)[1]
        total = torch.zeros_like(self.values).index_add_(0, nearest, values.to(self.values.dtype))
        count = torch.zeros(self.num_anchors, dtype=self.values.dtype, device=self.values.device)
        count.index_add_(0, nearest, torch.ones_like(nearest, dtype=count.dtype))
        hit = count > 0
        self.values[hit] = total[hit] / count[hit, None]
        return hit

    def extra_repr(self) -> str:
        return f"anchors={self.num_anchors}, dim={self.anchors.size(-1)}, channels={self.channels}, " \
               f"neighbors={self.neighbors}"
