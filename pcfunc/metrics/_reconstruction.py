"""Reconstruction errors per function: RMSE and PSNR (VaMoH App. B.3), for dense or packed batches."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

__all__ = ["rmse", "psnr"]


def rmse(pred: Tensor, target: Tensor, batch: Optional[Tensor] = None, channel_reduction: str = "sum") -> Tensor:
    r"""Root mean squared error per function sample (VaMoH App. B.3, Eq. 19).

    .. math::
        \mathrm{RMSE} = \sqrt{\frac{1}{D} \sum_{d=1}^{D} \lVert \mathbf y_d - \tilde{\mathbf y}_d \rVert_2^2}

    over the :math:`D` points of each sample; with ``channel_reduction="mean"`` the squared norm is
    divided by the number of channels (the usual image convention; identical for one channel).

    Args:
        pred (Tensor): Reconstruction, shape :math:`(N, C)` (packed) or :math:`(B, N, C)`.
        target (Tensor): Ground truth, same shape.
        batch (Tensor, optional): Sample of each row of packed inputs, shape :math:`(N,)`.
        channel_reduction (str): ``"sum"`` (Eq. 19) or ``"mean"``.

    Returns:
        Tensor: Shape :math:`(B,)` (one value for unbatched packed input: shape :math:`(1,)`).
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}")
    if pred.dim() not in (2, 3):
        raise ValueError(f"pred must have shape [N, C] or [B, N, C], got {tuple(pred.shape)}")
    if channel_reduction not in ("sum", "mean"):
        raise ValueError(f"channel_reduction must be 'sum' or 'mean', got {channel_reduction!r}")
    sq = (pred - target).double().square()
    sq = sq.sum(-1) if channel_reduction == "sum" else sq.mean(-1)
    if pred.dim() == 3:
        if batch is not None:
            raise ValueError("batch is only for packed [N, C] inputs")
        return sq.mean(-1).sqrt().to(pred.dtype)
    if batch is None:
        return sq.mean().sqrt().reshape(1).to(pred.dtype)
    if batch.shape != sq.shape:
        raise ValueError(f"batch has {batch.numel()} entries but pred has {sq.numel()} rows")
    num = int(batch.max()) + 1 if batch.numel() else 0
    counts = torch.bincount(batch, minlength=num).clamp_min(1).double()
    total = sq.new_zeros(num).index_add_(0, batch, sq)
    return (total / counts).sqrt().to(pred.dtype)


def psnr(pred: Tensor, target: Tensor, data_range: float = 1.0, batch: Optional[Tensor] = None,
         channel_reduction: str = "sum") -> Tensor:
    r"""Peak signal-to-noise ratio in dB per sample (VaMoH App. B.3, Eq. 20).

    .. math::
        \mathrm{PSNR} = 20 \log_{10}\left(\frac{\text{data\_range}}{\mathrm{RMSE}}\right)

    VaMoH writes 255 for 8-bit images; on data normalised to [0, 1] (ERA5 in pcfunc) ``data_range=1``.

    Args:
        pred (Tensor): Reconstruction, :math:`(N, C)` or :math:`(B, N, C)`.
        target (Tensor): Ground truth, same shape.
        data_range (float): Peak value. (default: ``1.0``)
        batch (Tensor, optional): Sample of each row of packed inputs.
        channel_reduction (str): See :func:`rmse`.

    Returns:
        Tensor: Shape :math:`(B,)`; ``inf`` where the reconstruction is exact.
    """
    if not data_range > 0:
        raise ValueError(f"data_range must be positive, got {data_range!r}")
    return 20.0 * torch.log10(data_range / rmse(pred, target, batch, channel_reduction))
