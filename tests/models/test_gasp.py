import math

import pytest
import torch
from torch_geometric.data import Batch, Data

from pcfunc.data import LatLonGrid
from pcfunc.manifolds import Euclidean
from pcfunc.models import GASP, gan_discriminator_loss, gan_generator_loss, gasp_config, random_subset
from pcfunc.models._points import as_points

GRID = LatLonGrid.regular(9, 16)  # 114 points


def tiny(**kw):
    args = dict(in_channels=1, latent_dim=4, hypernet_hidden=(8,), inr_hidden=(8, 8), num_frequencies=4,
                disc_channels=(4, 8), weight_hidden=(4,))
    args.update(kw)
    return GASP("sphere", **args).double()


def batch(num=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    vals = torch.rand((num, *GRID.shape, 1), generator=g, dtype=torch.float64) * 2 - 1
    b = GRID.to_batch(vals)
    b.pos = b.pos.double()
    return b


def test_gan_losses_match_their_closed_forms():
    real = torch.tensor([-3.0, -0.5, 0.0, 0.7, 4.0], dtype=torch.float64)
    fake = torch.tensor([2.0, -1.0, 0.3, -6.0, 0.0], dtype=torch.float64)
    sig = lambda t: 1 / (1 + torch.exp(-t))  # noqa: E731
    expected_d = -(torch.log(sig(real))).mean() - torch.log(1 - sig(fake)).mean()
    expected_g = -(torch.log(sig(fake))).mean()
    torch.testing.assert_close(gan_discriminator_loss(real, fake), expected_d)
    torch.testing.assert_close(gan_generator_loss(fake), expected_g)
    # Exact where log(sigmoid) underflows: -log sigma(-200) = 200 (+ e^-200).
    big = torch.tensor([-200.0], dtype=torch.float64)
    assert float(gan_generator_loss(big)) == pytest.approx(200.0)
    assert float(gan_discriminator_loss(big, -big)) == pytest.approx(400.0)
    assert float(gan_discriminator_loss(torch.tensor([200.0]), torch.tensor([-200.0]))) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("r1_on", ["logit", "probability"])
def test_r1_penalty_matches_finite_differences(r1_on):
    torch.manual_seed(0)
    m = tiny(r1_on=r1_on).eval()
    b = batch(2)
    r1, logits = m.r1_penalty(b.x, b.pos, b.batch)

    def score(x):
        with torch.no_grad():
            ell = m.discriminate(x, b.pos, b.batch)
            return ell if r1_on == "logit" else torch.sigmoid(ell)

    h = 1e-6
    grad = torch.zeros(b.x.size(0), dtype=torch.float64)
    for i in range(b.x.size(0)):
        xp, xm = b.x.clone(), b.x.clone()
        xp[i, 0] += h
        xm[i, 0] -= h
        grad[i] = (score(xp).sum() - score(xm).sum()) / (2 * h)
    expected = torch.stack([0.5 * grad[b.batch == c].pow(2).sum() for c in range(2)])
    torch.testing.assert_close(r1, expected, rtol=1e-5, atol=1e-12)
    assert float(r1.min()) > 0
    torch.testing.assert_close(logits, m.discriminate(b.x, b.pos, b.batch))


def test_r1_is_differentiable_for_the_discriminator_update():
    m = tiny().train()
    terms = m.discriminator_loss(batch(3), generator=torch.Generator().manual_seed(0))
    terms.loss.backward()
    grads = [p.grad for p in m.discriminator.parameters() if p.grad is not None]
    assert grads and max(float(g.abs().max()) for g in grads) > 0
    # The fakes are generated without gradients: the discriminator step does not touch the generator.
    assert all(p.grad is None for p in m.hypernet.parameters())
    torch.testing.assert_close(terms.loss, terms.gan + m.r1_weight * terms.r1.mean())
    torch.testing.assert_close(terms.gan, gan_discriminator_loss(terms.real_logits, terms.fake_logits))


def test_generator_loss_trains_the_generator():
    m = tiny().train()
    loss = m.generator_loss(batch(3), generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert max(float(p.grad.abs().max()) for p in m.hypernet.parameters()) > 0


def test_random_subset_is_shared_on_a_grid():
    b = batch(4)
    pts = as_points(b, GRID.manifold, 1, "b")
    sub = random_subset(pts, 30, torch.Generator().manual_seed(0))
    pos = sub.pos.view(4, 30, 3)
    assert torch.equal(pos, pos[:1].expand_as(pos))  # one subset for the whole batch
    # Each kept value is the value of that point in its own cloud.
    for c in range(4):
        d = torch.cdist(sub.pos[sub.batch == c], b.pos[b.batch == c])
        j = d.argmin(1)
        torch.testing.assert_close(sub.x[sub.batch == c], b.x[b.batch == c][j])
    a = Data(x=torch.rand(10, 1) * 2 - 1, pos=GRID.pos[:10])
    c = Data(x=torch.rand(5, 1) * 2 - 1, pos=GRID.pos[20:25])
    ragged = random_subset(as_points(Batch.from_data_list([a, c]), GRID.manifold, 1, "b"), 7)
    assert torch.bincount(ragged.batch).tolist() == [7, 5]


def test_fakes_are_generated_at_the_real_coordinates():
    m = tiny().eval()
    b = batch(2)
    z = m.sample_latent(2, torch.Generator().manual_seed(0))
    pts = as_points(b, m.manifold, 1, "b")
    fake = m._fake_like(z, pts)
    assert torch.equal(fake.pos, pts.pos) and torch.equal(fake.batch, pts.batch)
    torch.testing.assert_close(fake.x.view(2, -1, 1), m.generate(z, GRID.pos.double()))
    s = m.sample(3, GRID.super_resolution(2).pos.double())
    assert s.shape == (3, GRID.super_resolution(2).num_points, 1) and float(s.abs().max()) <= 1


def test_paper_configurations():
    m = GASP.from_config("era5")
    assert sum(p.numel() for p in m.hypernet.parameters()) == 34_031_361  # App. A.1 sizes
    assert [s.num_neighbors for s in m.discriminator.specs] == [9] * 4
    assert [s.pool_ratio for s in m.discriminator.specs] == [0.25] * 4
    assert [s.out_channels for s in m.discriminator.specs] == [64, 128, 256, 512]
    v = GASP.from_config("shapenet", hypernet_hidden=(8,))
    assert v.dim == 3 and [s.num_neighbors for s in v.discriminator.specs] == [27] * 4
    assert v.hypernet.target.encoding is None
    assert gasp_config("shapenet")["training"]["lr_generator"] == 2e-5
    assert isinstance(gasp_config("mnist")["manifold"], Euclidean)
    with pytest.raises(ValueError, match="name must be one of"):
        gasp_config("imagenet")


def test_errors_name_the_argument():
    m = tiny()
    b = batch(1)
    b.x = b.x * 3
    with pytest.raises(ValueError, match=r"real\.x must be scaled to \[-1, 1\]"):
        m.discriminator_loss(b)
    with pytest.raises(ValueError, match="r1_on"):
        tiny(r1_on="features")
    with pytest.raises(ValueError, match="r1_weight"):
        tiny(r1_weight=-1.0)
    with pytest.raises(ValueError, match="z must have shape"):
        m.discriminator_loss(batch(2), z=torch.zeros(3, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="pos must have"):
        m.generate(torch.zeros(1, 4, dtype=torch.float64), torch.zeros(5, 2, dtype=torch.float64))
    assert math.isfinite(float(m.discriminator_loss(batch(2)).loss))


def test_initialize_generator_starts_every_latent_at_the_data_mean():
    from pcfunc.data import LatLonGrid
    from pcfunc.models import GASP

    torch.manual_seed(0)
    grid = LatLonGrid.regular(9, 16)
    model = GASP("sphere", latent_dim=4, hypernet_hidden=(8,), inr_hidden=(16,), num_frequencies=16, sigma=0.5,
                 disc_channels=(4,), weight_hidden=(4,))
    pos = grid.pos.float()
    mean = 0.6 * torch.cos(2 * torch.asin(pos[:, 2].clamp(-1, 1)))[:, None]
    g = torch.Generator().manual_seed(0)
    y = torch.cat([mean + 0.05 * torch.randn(mean.shape, generator=g) for _ in range(4)])
    err = lambda: float((model.sample(3, pos, generator=g) - mean).pow(2).mean().sqrt())  # noqa: E731
    before = err()
    mse = model.initialize_generator(pos.repeat(4, 1), y, steps=800, residual_scale=0.02, generator=g)
    assert err() < 0.05 < before
    assert mse == pytest.approx(0.05 ** 2, rel=0.5)  # the noise variance around the fitted mean
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        model.initialize_generator(pos, mean * 3)
