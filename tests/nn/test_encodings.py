import io
import math

import numpy as np
import pytest
import torch

from pcfunc.manifolds import Sphere, latlon_to_xyz
from pcfunc.nn._encodings import FourierFeatures, SphericalHarmonics, spherical_harmonics

# ---------------------------------------------------------------------------------------------- FourierFeatures


def _rff_by_hand(x: np.ndarray, B: np.ndarray) -> np.ndarray:
    """gamma(x) = [cos(2 pi B x), sin(2 pi B x)], one entry at a time."""
    n, m = x.shape[0], B.shape[0]
    out = np.empty((n, 2 * m))
    for i in range(n):
        for j in range(m):
            s = sum(B[j, k] * x[i, k] for k in range(x.shape[1]))
            out[i, j] = math.cos(2 * math.pi * s)
            out[i, m + j] = math.sin(2 * math.pi * s)
    return out


def test_fourier_features_formula():
    ff = FourierFeatures(3, num_frequencies=5, sigma=2.0, dtype=torch.float64)
    x = torch.randn(7, 3, dtype=torch.float64)
    got = ff(x)
    assert got.shape == (7, 10) and ff.out_dim == 10
    np.testing.assert_allclose(got.numpy(), _rff_by_hand(x.numpy(), ff.B.numpy()), rtol=0, atol=1e-12)


def test_fourier_features_leading_dims_and_float32():
    ff = FourierFeatures(2, num_frequencies=4)
    x = torch.rand(3, 5, 2)
    got = ff(x)
    assert got.shape == (3, 5, 8) and got.dtype == torch.float32
    ref = _rff_by_hand(x.reshape(-1, 2).double().numpy(), ff.B.double().numpy()).reshape(3, 5, 8)
    np.testing.assert_allclose(got.numpy(), ref, atol=2e-5)


def test_fourier_features_distribution_of_B():
    ff = FourierFeatures(3, num_frequencies=4096, sigma=2.0)
    B = ff.B.double()
    assert B.shape == (4096, 3)
    assert abs(float(B.mean())) < 0.1
    assert abs(float(B.std()) - 2.0) < 0.05


def test_fourier_features_buffer_state_dict_roundtrip():
    ff = FourierFeatures(3, num_frequencies=8)
    assert list(ff.parameters()) == []
    assert set(ff.state_dict()) == {"B"}
    buf = io.BytesIO()
    torch.save(ff.state_dict(), buf)
    buf.seek(0)
    other = FourierFeatures(3, num_frequencies=8)
    assert not torch.equal(other.B, ff.B)
    other.load_state_dict(torch.load(buf))
    x = torch.randn(11, 3)
    assert torch.equal(other(x), ff(x))


def test_fourier_features_learnable():
    ff = FourierFeatures(2, num_frequencies=3, learnable=True)
    params = dict(ff.named_parameters())
    assert set(params) == {"B"} and params["B"].requires_grad
    assert "B" in ff.state_dict()
    ff(torch.randn(4, 2)).sum().backward()
    assert ff.B.grad is not None and ff.B.grad.shape == (3, 2)


def test_fourier_features_generator_and_reset():
    a = FourierFeatures(3, 6, generator=torch.Generator().manual_seed(1))
    b = FourierFeatures(3, 6, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a.B, b.B)
    old = a.B.clone()
    a.reset_parameters()
    assert not torch.equal(a.B, old)
    a.reset_parameters(torch.Generator().manual_seed(1))
    assert torch.equal(a.B, old)


def test_fourier_features_repr_and_errors():
    assert repr(FourierFeatures(3)) == "FourierFeatures(in_dim=3, num_frequencies=128, sigma=2, learnable=False)"
    with pytest.raises(ValueError, match="x must have shape"):
        FourierFeatures(3)(torch.randn(4, 2))
    with pytest.raises(TypeError, match="dtype"):
        FourierFeatures(3)(torch.randn(4, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="sigma"):
        FourierFeatures(3, sigma=0.0)
    with pytest.raises(ValueError, match="num_frequencies"):
        FourierFeatures(3, num_frequencies=0)
    with pytest.raises(ValueError, match="in_dim"):
        FourierFeatures(0)


# ---------------------------------------------------------------------------------------- spherical harmonics


def _midpoint_sphere_quadrature(n_lat=180, n_lon=360):
    """Cell-centre lat/lon grid and cos-latitude area weights (sum 4 pi), float64."""
    dlat, dlon = 180.0 / n_lat, 360.0 / n_lon
    lat = torch.arange(n_lat, dtype=torch.float64) * dlat - 90.0 + dlat / 2
    lon = torch.arange(n_lon, dtype=torch.float64) * dlon
    xyz = latlon_to_xyz(lat[:, None], lon[None, :]).reshape(-1, 3)
    w = (torch.cos(torch.deg2rad(lat)) * math.radians(dlat) * math.radians(dlon))[:, None].expand(n_lat, n_lon)
    return xyz, w.reshape(-1)


@pytest.mark.parametrize("normalization, scale", [("integral", 1.0), ("component", 4 * math.pi)])
def test_spherical_harmonics_orthonormal(normalization, scale):
    xyz, w = _midpoint_sphere_quadrature()
    assert abs(float(w.sum()) - 4 * math.pi) < 1e-3
    Y = spherical_harmonics(xyz, 3, normalization)
    assert Y.shape == (xyz.size(0), 16)
    gram = (Y * w[:, None]).T @ Y / scale
    np.testing.assert_allclose(gram.numpy(), np.eye(16), atol=1e-4)


def test_spherical_harmonics_norm_normalization():
    x = Sphere().random(50, dtype=torch.float64)
    Y = spherical_harmonics(x, 4, "norm")
    for l in range(5):
        block = Y[:, l * l:(l + 1) ** 2]
        np.testing.assert_allclose(block.norm(dim=1).numpy(), 1.0, atol=1e-12)


def test_spherical_harmonics_z_up_frame():
    # m = 0 harmonics depend on latitude only; every m != 0 harmonic (l >= 1) varies with longitude.
    lat = torch.linspace(-80.0, 80.0, 9, dtype=torch.float64)
    lon = torch.arange(0.0, 360.0, 7.5, dtype=torch.float64)
    xyz = latlon_to_xyz(lat[:, None], lon[None, :])  # [9, 48, 3]
    Y = SphericalHarmonics(4, normalization="integral")(xyz)
    spread = (Y.amax(dim=1) - Y.amin(dim=1)).amax(dim=0)  # range over longitude, worst latitude
    for l in range(5):
        for m in range(-l, l + 1):
            c = l * l + l + m
            if m == 0:
                assert float(spread[c]) < 1e-12, (l, m)
            else:
                assert float(spread[c]) > 1e-2, (l, m)
    # Y_1^0 is sqrt(3 / 4 pi) z = sqrt(3 / 4 pi) sin(lat); poles included.
    poles = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, -1.0]], dtype=torch.float64)
    y10 = spherical_harmonics(poles, 1, "integral")[:, 2]
    np.testing.assert_allclose(y10.numpy(), [math.sqrt(3 / (4 * math.pi)), -math.sqrt(3 / (4 * math.pi))], atol=1e-12)


def test_spherical_harmonics_equal_scipy_real_harmonics():
    sph_harm_y = pytest.importorskip("scipy.special").sph_harm_y
    lat = torch.tensor([10.0, -35.0, 62.0, 80.0, -89.0], dtype=torch.float64)
    lon = torch.tensor([20.0, 135.0, -100.0, 300.0, 45.0], dtype=torch.float64)
    Y = spherical_harmonics(latlon_to_xyz(lat, lon), 4, "integral").numpy()
    theta, phi = np.deg2rad(90.0 - lat.numpy()), np.deg2rad(lon.numpy())
    for l in range(5):
        for m in range(-l, l + 1):
            c = sph_harm_y(l, abs(m), theta, phi)
            ref = c.real if m == 0 else math.sqrt(2) * (-1) ** m * (c.real if m > 0 else c.imag)
            np.testing.assert_allclose(Y[:, l * l + l + m], ref, atol=1e-12, err_msg=f"l={l}, m={m}")


def test_spherical_harmonics_module():
    sh = SphericalHarmonics(3)
    assert sh.out_dim == 16 and sh.in_dim == 3 and list(sh.parameters()) == []
    sh.reset_parameters()
    x = Sphere().random(6)
    assert torch.equal(sh(x), spherical_harmonics(x, 3))
    assert repr(sh) == "SphericalHarmonics(lmax=3, normalization='component', normalize=True)"
    # normalize=True projects radially; False evaluates the polynomials as given.
    np.testing.assert_allclose(sh(3.0 * x).numpy(), sh(x).numpy(), atol=1e-5)
    raw = SphericalHarmonics(1, normalization="component", normalize=False)(2.0 * x)
    np.testing.assert_allclose(raw[:, 1:].numpy(), (2.0 * math.sqrt(3) * x[:, [1, 2, 0]]).numpy(), atol=1e-5)


def test_spherical_harmonics_errors():
    with pytest.raises(ValueError, match="lmax"):
        SphericalHarmonics(13)
    with pytest.raises(ValueError, match="lmax"):
        spherical_harmonics(torch.randn(3, 3), -1)
    with pytest.raises(ValueError, match="normalization"):
        SphericalHarmonics(2, normalization="orthonormal")
    with pytest.raises(ValueError, match=r"x must have shape \[\.\.\., 3\]"):
        spherical_harmonics(torch.randn(4, 2), 2)
    with pytest.raises(TypeError, match="floating-point"):
        spherical_harmonics(torch.ones(4, 3, dtype=torch.long), 2)
