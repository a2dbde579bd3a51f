"""Model output statistics: a model's predictions corrected by its own errors on the training fields, optionally
blended with a reference predictor, with each point's error spread as its uncertainty."""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

from ._baselines import _check_fields

__all__ = ["OutputStatistics"]


def _errors(prediction: Tensor, truth: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """Errors ``truth - prediction`` (float64, 0 where missing), which entries count, and their counts per point."""
    ok = ~torch.isnan(truth.double())
    err = torch.where(ok, truth.double() - prediction.double(), 0.0)
    return err, ok, ok.sum(0)


class OutputStatistics:
    r"""Model output statistics (MOS), the statistical post-processing of weather forecasts: a model's predictions
    corrected by its mean error at each point on the training fields, optionally blended with a reference
    predictor (e.g. :class:`BilinearDownscaling`), with the spread of the corrected errors at each point as the
    uncertainty.

    With errors :math:`\mathbf e_t = \mathbf y_t - \hat{\mathbf y}_t` of the model and
    :math:`\mathbf e^{\text{ref}}_t` of the reference on the :math:`T` training fields, their means
    :math:`\bar{\mathbf e}`, :math:`\bar{\mathbf e}^{\text{ref}}` at each point and a weight :math:`w`,

    .. math::
        \tilde{\mathbf y} = \hat{\mathbf y}^{\text{ref}} + \bar{\mathbf e}^{\text{ref}}
        + w \big(\hat{\mathbf y} + \bar{\mathbf e} - \hat{\mathbf y}^{\text{ref}} - \bar{\mathbf e}^{\text{ref}}\big),
        \qquad
        \sigma^2 = \overline{\big((1 - w)(\mathbf e^{\text{ref}}_t - \bar{\mathbf e}^{\text{ref}})
        + w (\mathbf e_t - \bar{\mathbf e})\big)^2} + w^2 s^2,

    the first term of :math:`\sigma^2` the variance of the corrected errors over the training fields (computed
    from their per-point second moments for any :math:`w`), :math:`s` the model's own predictive standard
    deviation, if given. Without a reference, :math:`w = 1`: the model plus its mean error. With one,
    :meth:`fit_weight` fits :math:`w` by least squares on held-out fields: a model fitted to its training fields
    errs less on them than on new fields, so their errors alone would trust it too much. :math:`w < 1` shrinks
    the model's field-dependent detail towards the reference where that detail does not generalise.

    The training errors are in-sample for a model fitted to those fields: scale :math:`\sigma` on held-out fields
    (:func:`~pcfunc.metrics.fit_std_scale`, as :func:`evaluate_uncertainty` does).

    Args:
        prediction (Tensor): The model's predictions of the training fields, :math:`(T, M, C)`.
        truth (Tensor): The training fields, :math:`(T, M, C)`; NaN where missing (skipped).
        reference (Tensor, optional): The reference's predictions of the same fields, :math:`(T, M, C)`.

    Shapes:
        - **prediction**, **truth**, **reference**: :math:`(T, M, C)`, :math:`T \geq 2`. A point with fewer than 2
          values in ``truth`` (e.g. land in sea-surface temperature) gets no bias correction and the second
          moments pooled over the other points of its channel.
        - **mean**, **std** of :meth:`predict`: :math:`(B, M, C)` like its ``prediction``.
    """

    def __init__(self, prediction: Tensor, truth: Tensor, reference: Optional[Tensor] = None) -> None:
        _check_fields(truth, "truth")
        for name, t in (("prediction", prediction), ("reference", reference)):
            if t is None:
                continue
            _check_fields(t, name, missing=False)
            if t.shape != truth.shape:
                raise ValueError(f"{name} must have the shape of truth {tuple(truth.shape)}, got {tuple(t.shape)}")
        if truth.size(0) < 2:
            raise ValueError(f"truth must hold at least 2 training fields for a spread, got {truth.size(0)}")
        err, ok, n = _errors(prediction, truth)
        if int((n >= 2).sum()) == 0:
            raise ValueError("truth must have a value at some point in at least 2 training fields")
        self._few = n < 2  # points the training fields (almost) never have: pooled second moments, no bias
        self.bias = err.sum(0) / n.clamp_min(1)  #: mean error of the model at each point, :math:`(M, C)` (float64)
        d = torch.where(ok, err - self.bias, 0.0)
        self._mm = self._moment(d, d, n)
        self.reference_bias: Optional[Tensor] = None  #: the reference's mean error, if a reference is given
        self._rr = self._mr = None
        if reference is not None:
            err_r = _errors(reference, truth)[0]
            self.reference_bias = err_r.sum(0) / n.clamp_min(1)
            d_r = torch.where(ok, err_r - self.reference_bias, 0.0)
            self._rr, self._mr = self._moment(d_r, d_r, n), self._moment(d, d_r, n)
        #: The weight :math:`w` of the model (``1``: the model with its mean error; :meth:`fit_weight` sets it).
        self.weight = 1.0

    def _moment(self, a: Tensor, b: Tensor, n: Tensor) -> Tensor:
        """Per-point second moment of deviations over the fields (``n - 1`` divisor); where a point has fewer than
        2 values, the moment pooled over the points of its channel that have them."""
        total = (a * b).sum(0)  # [M, C]
        m = total / (n - 1).clamp_min(1)
        if bool(self._few.any()):
            many = ~self._few
            pooled = torch.where(many, total, 0.0).sum(0) / torch.where(many, n - 1, 0).sum(0).clamp_min(1)
            m = torch.where(self._few, pooled, m)
        return m

    def _check(self, prediction: Tensor, reference: Optional[Tensor], name: str = "prediction") -> None:
        _check_fields(prediction, name, missing=False)
        if prediction.shape[1:] != self.bias.shape:
            raise ValueError(f"{name} must have shape [B, {', '.join(map(str, self.bias.shape))}], got "
                             f"{tuple(prediction.shape)}")
        if (reference is None) != (self.reference_bias is None):
            raise ValueError("reference must be given exactly when it was given for the training fields")
        if reference is not None and reference.shape != prediction.shape:
            raise ValueError(f"reference must have the shape of {name} {tuple(prediction.shape)}, got "
                             f"{tuple(reference.shape)}")

    def _parts(self, prediction: Tensor, reference: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
        """The corrected reference and the corrected model's difference from it (float64)."""
        model = prediction.double() + self.bias
        if reference is None:
            return torch.zeros_like(model), model
        ref = reference.double() + self.reference_bias
        return ref, model - ref

    def fit_weight(self, prediction: Tensor, truth: Tensor, reference: Tensor) -> float:
        r"""Fit :attr:`weight` by least squares on held-out fields (neither training nor scored):
        :math:`w = \sum (\mathbf y - \tilde{\mathbf y}^{\text{ref}}) \Delta / \sum \Delta^2` with
        :math:`\Delta` the corrected model minus the corrected reference, over the points that are not missing.

        Args:
            prediction (Tensor): The model's predictions of the held-out fields, :math:`(B, M, C)`.
            truth (Tensor): Those fields, :math:`(B, M, C)`.
            reference (Tensor): The reference's predictions of them, :math:`(B, M, C)`.

        Returns:
            float: The weight, also stored in :attr:`weight`.
        """
        if self.reference_bias is None:
            raise ValueError("fit_weight needs a reference: pass reference= for the training fields")
        self._check(prediction, reference)
        _check_fields(truth, "truth")
        if truth.shape != prediction.shape:
            raise ValueError(f"truth must have the shape of prediction {tuple(prediction.shape)}, got "
                             f"{tuple(truth.shape)}")
        ref, delta = self._parts(prediction, reference)
        ok = ~torch.isnan(truth.double())
        target = torch.where(ok, truth.double() - ref, 0.0)
        delta = torch.where(ok, delta, 0.0)
        denom = float(delta.square().sum())
        self.weight = float((target * delta).sum()) / denom if denom > 0 else 1.0
        return self.weight

    def predict(self, prediction: Tensor, reference: Optional[Tensor] = None,
                std: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        """The corrected prediction and its standard deviation (see the class), each in ``prediction``'s dtype.

        Args:
            prediction (Tensor): The model's predictions, :math:`(B, M, C)`.
            reference (Tensor, optional): The reference's predictions of the same fields (exactly when a reference
                was given for the training fields).
            std (Tensor, optional): The model's predictive standard deviation, broadcastable to ``prediction``.
        """
        self._check(prediction, reference)
        ref, delta = self._parts(prediction, reference)
        w = self.weight
        var = self._mm if self._rr is None else (1 - w) ** 2 * self._rr + w * w * self._mm + 2 * w * (1 - w) * self._mr
        var = var.clamp_min(0).expand_as(delta)
        if std is not None:
            var = var + w * w * std.double().square()
        return (ref + w * delta).to(prediction.dtype), var.sqrt().to(prediction.dtype)
