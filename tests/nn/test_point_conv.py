import pytest
import torch

from pcfunc.manifolds import Euclidean, Sphere
from pcfunc.nn._point_conv import AvgPool, PointConv
from pcfunc.ops import NeighborCache, fps


def _brute_force(conv, x, pos, batch, num):
    """Per-centroid loop: FPS per cloud, k nearest by brute force, sum_j W(r_cj) [f_j, r_cj] -> Linear."""
    outs, cents = [], []
    m = conv.manifold
    for b in batch.unique().tolist():
        sel = (batch == b).nonzero().squeeze(1)
        p, f = pos[sel], x[sel]
        c_idx = fps(p, num=num, manifold=m, backend="torch")
        for c in c_idx.tolist():
            d = m.cdist(p[c:c + 1], p)[0]
            nbr = d.argsort(stable=True)[: conv.num_neighbors]
            acc = 0
            for j in nbr.tolist():
                r = m.relative(p[c], p[j])
                w = conv.weight_net(r[None])[0]
                g = torch.cat((f[j], r))
                acc = acc + torch.outer(g, w)
            outs.append(conv.linear(acc.reshape(1, -1))[0])
            cents.append(p[c])
    return torch.stack(outs), torch.stack(cents)


@pytest.mark.parametrize("channels", [3, 16], ids=["einsum", "per-centroid-products"])
@pytest.mark.parametrize("manifold", [Euclidean(2), Sphere()], ids=repr)
def test_point_conv_equals_per_centroid_loop(manifold, channels):
    torch.manual_seed(0)
    pos = torch.cat((manifold.random(30, generator=torch.Generator().manual_seed(1)),
                     manifold.random(25, generator=torch.Generator().manual_seed(2)))).double()
    batch = torch.tensor([0] * 30 + [1] * 25)
    x = torch.randn(55, channels, dtype=torch.float64)
    conv = PointConv(channels, 5, num_neighbors=4, num_centroids=7, manifold=manifold, cache=None).double().eval()
    out, cpos, cbatch = conv(x, pos, batch)
    ref, rpos = _brute_force(conv, x, pos, batch, 7)
    assert out.shape == (14, 5) and torch.equal(cbatch, torch.tensor([0] * 7 + [1] * 7))
    assert torch.allclose(cpos, rpos)
    assert torch.allclose(out, ref, atol=1e-10)


def test_aggregate_values_gradients_and_double_backward():
    # The per-(cloud, centroid) products against einsum, with first and second derivatives (GASP's R1
    # penalty differentiates the discriminator's gradient).
    from pcfunc.nn._kernels import _WIDE_FEATURES, neighbour_sum as _aggregate

    torch.manual_seed(0)
    g = torch.randn(3, 5, 4, _WIDE_FEATURES, dtype=torch.float64, requires_grad=True)
    w = torch.randn(5, 4, 6, dtype=torch.float64, requires_grad=True)
    out = _aggregate(g, w)
    assert out.grad_fn is not None and "NeighbourSum" in type(out.grad_fn).__name__
    ref = torch.einsum("bmkc,mkw->bmcw", g, w)
    torch.testing.assert_close(out, ref)
    grad = torch.randn_like(ref)
    for a, b in zip(torch.autograd.grad(out, (g, w), grad), torch.autograd.grad(ref, (g, w), grad)):
        torch.testing.assert_close(a, b)
    assert torch.autograd.gradcheck(_aggregate, (g, w))
    assert torch.autograd.gradgradcheck(_aggregate, (g, w))
    # Narrow features keep einsum.
    assert "NeighbourSum" not in type(_aggregate(g[..., :3], w).grad_fn).__name__


def test_point_conv_is_permutation_invariant():
    torch.manual_seed(0)
    m = Euclidean(2)
    pos = m.random(40, generator=torch.Generator().manual_seed(0)).double()
    x = torch.randn(40, 2, dtype=torch.float64)
    conv = PointConv(2, 4, num_neighbors=5, manifold=m, cache=None).double().eval()  # every point a centroid
    out, cpos, _ = conv(x, pos)
    perm = torch.randperm(40)
    out_p, cpos_p, _ = conv(x[perm], pos[perm])
    assert torch.allclose(out_p, out[perm], atol=1e-10) and torch.equal(cpos_p, cpos[perm])


def test_point_conv_shared_grid_cache_and_dropout_cap():
    from pcfunc.data import LatLonGrid

    grid = LatLonGrid.regular(10, 20)
    cache = NeighborCache()
    conv = PointConv(1, 8, num_neighbors=9, num_centroids=64, manifold="sphere", cache=cache)
    data = grid.to_batch(torch.rand(3, 10, 20))
    out, pos, batch = conv(data.x, data.pos, data.batch)
    assert out.shape == (3 * 64, 8) and torch.equal(batch, torch.arange(3).repeat_interleave(64))
    conv(data.x, data.pos, data.batch)
    assert cache.hits == 1
    keep = torch.cat((torch.ones(grid.num_points, dtype=torch.bool), torch.rand(2 * grid.num_points) < 0.2))
    out, pos, batch = conv(data.x[keep], data.pos[keep], data.batch[keep])
    smallest = int(torch.bincount(data.batch[keep]).min())
    assert smallest < 64 and out.shape == (3 * smallest, 8)
    out.sum().backward()
    assert conv.linear.weight.grad is not None


def test_avg_pool_means_neighbour_features():
    m = Euclidean(1)
    pos = torch.linspace(0, 1, 11)[:, None]
    x = torch.arange(11.0)[:, None]
    pool = AvgPool(3, num_centroids=2, manifold=m, cache=None)
    out, cpos, _ = pool(x, pos)
    # FPS from point 0 takes 0 then 10; neighbours {0,1,2} and {8,9,10}.
    assert torch.equal(cpos[:, 0], torch.tensor([0.0, 1.0])) and torch.allclose(out[:, 0], torch.tensor([1.0, 9.0]))


def test_errors():
    with pytest.raises(ValueError, match="manifold must be given"):
        PointConv(1, 2, 3)
    with pytest.raises(ValueError, match="num_neighbors must be a positive integer"):
        PointConv(1, 2, 0, manifold="sphere")
    with pytest.raises(ValueError, match="at most one of ratio= and num_centroids="):
        PointConv(1, 2, 3, num_centroids=4, ratio=0.5, manifold="sphere")
    conv = PointConv(2, 2, 3, manifold="sphere", cache=None)
    with pytest.raises(ValueError, match="x has 1 channels but in_channels=2"):
        conv(torch.rand(10, 1), Sphere().random(10))
    with pytest.raises(ValueError, match="pos is not on Sphere"):
        conv(torch.rand(10, 2), torch.rand(10, 3) + 1)
    with pytest.raises(TypeError, match=r"x must be a floating-point tensor, got dtype torch.int64"):
        conv(torch.ones(10, 2, dtype=torch.long), Sphere().random(10))  # failed inside torch before
    with pytest.raises(ValueError, match="pos has no points"):
        conv(torch.zeros(0, 2), Sphere().random(10)[:0])


def test_point_conv_net_heads_and_paper_stacks():
    from pcfunc.data import LatLonGrid
    from pcfunc.nn._point_conv_net import PointConvNet, gasp_discriminator_specs, vamoh_encoder_specs

    grid = LatLonGrid.regular(46, 90)
    data = grid.to_batch(torch.rand(2, 46, 90))
    specs, kw = vamoh_encoder_specs("era5")
    enc = PointConvNet(1, specs, "sphere", head="gaussian", **kw)
    mu, logvar = enc(data.x, data.pos, data.batch)
    assert mu.shape == (2, 32) and logvar.shape == (2, 32)
    disc = PointConvNet(1, gasp_discriminator_specs((64, 128, 256, 512), dim=2), "sphere", head="logit")
    logit = disc(data.x, data.pos, data.batch)
    assert logit.shape == (2, 1)
    h, pos, b = disc.features(data.x, data.pos, data.batch)
    # 3962 -> 991 -> 248 -> 62 -> 16 points per cloud after the four poolings.
    assert torch.equal(torch.bincount(b), torch.tensor([16, 16]))
    # The R1 penalty needs d logit / d features: the graph is differentiable in x.
    x = data.x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(disc(x, data.pos, data.batch).sum(), x, create_graph=True)
    assert g.shape == x.shape and float(g.abs().sum()) > 0
    g.square().sum().backward()
    for name in ("celeba_hq", "shapes3d", "polymnist", "shapenet"):
        s, k = vamoh_encoder_specs(name)
        assert len(s) >= 3 and k["latent_dim"] in (16, 32, 64)
    with pytest.raises(ValueError, match="dataset must be one of"):
        vamoh_encoder_specs("mnist-typo")


def test_point_conv_net_mean_readout_is_per_cloud():
    from pcfunc.nn._point_conv_net import LayerSpec, PointConvNet

    m = Euclidean(2)
    pos = m.random(60, generator=torch.Generator().manual_seed(0))
    net = PointConvNet(1, [LayerSpec(4, 5, num_centroids=10)], m, head=None, cache=None).eval()
    x = torch.rand(60, 1)
    both = net(x, pos, torch.tensor([0] * 30 + [1] * 30))
    first = net(x[:30], pos[:30])
    assert both.shape == (2, 4) and torch.allclose(both[0], first[0], atol=1e-6)
    with pytest.raises(ValueError, match="head must be"):
        PointConvNet(1, [LayerSpec(4, 5)], m, head="softmax")
    with pytest.raises(ValueError, match="needs a positive latent_dim"):
        PointConvNet(1, [LayerSpec(4, 5)], m, head="gaussian")


@pytest.mark.parametrize("train", [False, True])
def test_shared_grid_fast_path_equals_per_cloud_evaluation(train):
    # Clouds on one grid share the weight network's evaluation; the result must be that of each cloud alone
    # (in training mode too: BatchNorm statistics over identical copies equal those of one copy).
    from pcfunc.data import LatLonGrid

    grid = LatLonGrid.regular(8, 16)
    torch.manual_seed(0)
    conv = PointConv(2, 6, num_neighbors=5, num_centroids=20, manifold="sphere", cache=None).double()
    conv.train(train)
    data = grid.to_batch(torch.rand(3, 8, 16, 2, dtype=torch.float64))
    out, _, _ = conv(data.x, data.pos.double(), data.batch)
    n = grid.num_points
    for b in range(3):
        single, _, _ = conv(data.x[b * n:(b + 1) * n], data.pos[b * n:(b + 1) * n].double())
        assert torch.allclose(out[b * 20:(b + 1) * 20], single, atol=1e-10)


def test_global_centroid_sums_over_each_whole_cloud():
    torch.manual_seed(0)
    m = Euclidean(2)
    pos = m.random(25, generator=torch.Generator().manual_seed(5)).double()
    batch = torch.tensor([0] * 10 + [1] * 15)
    x = torch.randn(25, 3, dtype=torch.float64)
    conv = PointConv(3, 4, num_neighbors=1, manifold=m, global_centroid=True, cache=None).double().eval()
    out, cpos, cbatch = conv(x, pos, batch)
    assert out.shape == (2, 4) and torch.equal(cbatch, torch.tensor([0, 1])) and float(cpos.abs().max()) == 0
    for b, sel in ((0, slice(0, 10)), (1, slice(10, 25))):
        acc = sum(torch.outer(torch.cat((x[j], pos[j])), conv.weight_net(pos[j][None])[0]) for j in range(25)[sel])
        assert torch.allclose(out[b], conv.linear(acc.reshape(1, -1))[0], atol=1e-10)
    # Permuting the points of the clouds does not change the result.
    perm = torch.cat((torch.randperm(10), 10 + torch.randperm(15)))
    assert torch.allclose(conv(x[perm], pos[perm], batch)[0], out, atol=1e-10)
    from pcfunc.nn import vamoh_encoder_specs

    specs, _ = vamoh_encoder_specs("celeba_hq")
    assert specs[-1].global_centroid and specs[-1].num_centroids is None
    with pytest.raises(ValueError, match="global_centroid=True takes no"):
        PointConv(1, 2, 3, num_centroids=4, manifold=m, global_centroid=True)


def test_layer_norm_computes_the_same_function_in_training_and_evaluation():
    from pcfunc.nn import LayerSpec, PointConvNet

    torch.manual_seed(0)
    pos = Sphere().random(120, generator=torch.Generator().manual_seed(0))
    pos = torch.cat([pos, pos])
    x = torch.rand(240, 1)
    batch = torch.arange(2).repeat_interleave(120)
    specs = [LayerSpec(8, 5, num_centroids=30), LayerSpec(8, 5, num_centroids=8)]
    outs = {}
    for norm in ("batch", "instance", "layer", "none"):
        torch.manual_seed(1)
        net = PointConvNet(1, specs, "sphere", head="gaussian", latent_dim=3, norm=norm, cache=None)
        kinds = {type(m).__name__ for m in net.modules()}
        assert ("BatchNorm1d" in kinds) == (norm == "batch") and ("LayerNorm" in kinds) == (norm == "layer")
        assert ("CloudNorm" in kinds) == (norm == "instance")
        net.train()
        a = net(x, pos, batch)[0]
        # Train-mode output of cloud 0 alone (batch statistics of one cloud) and eval-mode output.
        b = net(x[:120], pos[:120], batch[:120])[0]
        net.eval()
        c = net(x, pos, batch)[0]
        outs[norm] = (a, b, c)
    for norm in ("instance", "layer", "none"):
        a, b, c = outs[norm]
        assert torch.allclose(a, c, atol=1e-6) and torch.allclose(a[:1], b, atol=1e-6)
    a, _, c = outs["batch"]
    assert not torch.allclose(a, c, atol=1e-3)  # running statistics differ from the batch's
    with pytest.raises(ValueError, match="norm must be one of"):
        PointConvNet(1, specs, "sphere", norm="group")


@pytest.mark.parametrize("norm", ["batch", "none"])
def test_weight_net_is_pyg_mlp(norm):
    # WeightNet against torch_geometric.nn.MLP with the same weights, in training and evaluation mode.
    from torch_geometric.nn import MLP

    from pcfunc.nn import WeightNet

    torch.manual_seed(0)
    net = WeightNet(3, (8, 5), norm=norm).double()
    ref = MLP([3, 8, 5], act="leaky_relu", act_kwargs={"negative_slope": 0.2},
              norm="batch_norm" if norm == "batch" else None, plain_last=False).double()
    linears = [m for m in net.net if isinstance(m, torch.nn.Linear)]
    norms = [m for m in net.net if isinstance(m, torch.nn.BatchNorm1d)]
    with torch.no_grad():
        for lin, mine in zip(ref.lins, linears):
            lin.weight.copy_(mine.weight)
            lin.bias.copy_(mine.bias)
        for bn, mine in zip(ref.norms, norms):
            inner = getattr(bn, "module", bn)
            inner.weight.copy_(torch.rand_like(inner.weight))
            mine.weight.copy_(inner.weight)
    x = torch.randn(40, 3, dtype=torch.float64)
    for mode in (True, False):
        net.train(mode)
        ref.train(mode)
        torch.testing.assert_close(net(x), ref(x))
