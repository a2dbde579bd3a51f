import math

import numpy as np
import pytest
import torch

from pcfunc.metrics import psnr, rmse


def test_psnr_matches_scikit_image_for_one_channel_and_mean_reduction():
    metrics = pytest.importorskip("skimage.metrics")
    g = torch.Generator().manual_seed(0)
    y = torch.rand(2, 300, 3, generator=g, dtype=torch.float64)
    p = (y + 0.05 * torch.randn(2, 300, 3, generator=g, dtype=torch.float64)).clamp(0, 1)
    ours = psnr(p, y, channel_reduction="mean")
    for b in range(2):
        ref = metrics.peak_signal_noise_ratio(y[b].numpy(), p[b].numpy(), data_range=1.0)
        assert abs(float(ours[b]) - ref) < 1e-9
    one = psnr(p[..., :1], y[..., :1])
    ref = metrics.peak_signal_noise_ratio(y[0, :, 0].numpy(), p[0, :, 0].numpy(), data_range=1.0)
    assert abs(float(one[0]) - ref) < 1e-9


def test_eq19_sums_channels_and_packed_batches():
    y = torch.zeros(5, 2, dtype=torch.float64)
    p = torch.full((5, 2), 0.1, dtype=torch.float64)
    # Eq. 19: sqrt(mean_d ||y_d - p_d||^2) = sqrt(2 * 0.01)
    assert math.isclose(float(rmse(p, y)), math.sqrt(0.02), rel_tol=1e-12)
    assert math.isclose(float(psnr(p, y, data_range=255.0)), 20 * math.log10(255 / math.sqrt(0.02)), rel_tol=1e-12)
    batch = torch.tensor([0, 0, 1, 1, 1])
    p2 = p.clone()
    p2[2:] = 0.2
    r = rmse(p2, y, batch)
    assert torch.allclose(r, torch.tensor([math.sqrt(0.02), math.sqrt(0.08)], dtype=torch.float64))
    assert torch.isinf(psnr(y, y)).all()
    np.testing.assert_allclose(rmse(p2.view(1, 5, 2), y.view(1, 5, 2)).numpy(),
                               [math.sqrt((2 * 0.02 + 3 * 0.08) / 5)])


def test_errors():
    with pytest.raises(ValueError, match="same shape"):
        rmse(torch.zeros(3, 1), torch.zeros(4, 1))
    with pytest.raises(ValueError, match="channel_reduction"):
        rmse(torch.zeros(3, 1), torch.zeros(3, 1), channel_reduction="max")
    with pytest.raises(ValueError, match="data_range must be positive"):
        psnr(torch.zeros(3, 1), torch.zeros(3, 1), data_range=0)
