"""pcfunc on a CUDA device: the same numbers as on the CPU for the same weights and seed (a CPU
``torch.Generator`` drives the draws on either device), and Lightning training on a GPU. Skipped without CUDA."""

import pytest
import torch

from pcfunc.data import LatLonGrid
from pcfunc.manifolds import Sphere
from pcfunc.models import GASP, VaMoH
from pcfunc.nn import LayerSpec
from pcfunc.ops import fps, knn

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

GRID = LatLonGrid.regular(9, 16)


def _batch(num=3, device="cpu"):
    g = torch.Generator().manual_seed(0)
    vals = 0.2 + 0.6 * torch.rand((num, *GRID.shape, 1), generator=g, dtype=torch.float64)
    b = GRID.to_batch(vals)
    b.pos = b.pos.double()
    return b.to(device)


def _vamoh(**kw):
    torch.manual_seed(0)
    args = dict(in_channels=1, encoder=[LayerSpec(8, 4, num_centroids=32), LayerSpec(8, 4, global_centroid=True)],
                latent_dim=4, num_components=3, hypernet_hidden=(8,), generator_hidden=(8,), num_frequencies=4,
                categorical_hidden=(8,), flow_layers=2, likelihood="gaussian")
    args.update(kw)
    return VaMoH("sphere", **args).double()


def _observed(b, mask):
    from torch_geometric.data import Batch

    keep = mask.to(b.x.device).repeat(b.num_graphs)
    return Batch(x=b.x[keep], pos=b.pos[keep], batch=b.batch[keep])


def _pair(build):
    """The same model (same weights) on the CPU and on CUDA."""
    cpu, gpu = build(), build()
    gpu.load_state_dict(cpu.state_dict())
    return cpu, gpu.cuda()


def _close(cpu, gpu, **kw):
    torch.testing.assert_close(gpu.cpu(), cpu, **kw)


@pytest.mark.parametrize("fine", [False, True])
def test_vamoh_elbo_and_gradients_match_the_cpu(fine):
    cpu, gpu = _pair(lambda: _vamoh(max_dropout=0.5))
    for m in (cpu, gpu):
        m.warmup = False
        m.train()
    outs = []
    for m, dev in ((cpu, "cpu"), (gpu, "cuda")):
        target = _batch(3, dev) if fine else None
        out = m.elbo(_batch(3, dev), generator=torch.Generator().manual_seed(7), target=target)
        out.loss.backward()
        outs.append(out)
    _close(outs[0].elbo, outs[1].elbo)
    _close(outs[0].kl_z, outs[1].kl_z)
    for (name, p), q in zip(cpu.named_parameters(), gpu.parameters()):
        if p.grad is not None:
            _close(p.grad, q.grad, msg=name)


def test_vamoh_tasks_match_the_cpu():
    cpu, gpu = _pair(_vamoh)
    cpu.eval()
    gpu.eval()
    fine = GRID.super_resolution(2).pos.double()
    observed = torch.arange(GRID.num_points) % 3 != 0
    res = []
    for m, dev in ((cpu, "cpu"), (gpu, "cuda")):
        b, q = _batch(2, dev), fine.to(dev)
        g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
        pred = m.predictive(b, q, num_samples=4, generator=g(), residual_neighbors=4, residual_kernel="linear")
        res.append(dict(rec=m.reconstruct(b), sr=m.reconstruct(b, q, residual_neighbors=4),
                        mean=pred.mean, std=pred.std, sample=m.sample(2, q, generator=g()),
                        noisy=m.sample(2, q, mean=False, generator=g()),
                        inpaint=m.inpaint(_observed(b, observed), GRID.pos.double().to(dev), refine_steps=3)))
    for k in res[0]:
        assert res[1][k].is_cuda, k
        _close(res[0][k], res[1][k], msg=k)


def test_gasp_losses_and_samples_match_the_cpu():
    cpu, gpu = _pair(lambda: GASP("sphere", in_channels=1, latent_dim=4, hypernet_hidden=(8,), inr_hidden=(8, 8),
                                  num_frequencies=4, disc_channels=(4, 8), weight_hidden=(4,)).double())
    res = []
    for m, dev in ((cpu, "cpu"), (gpu, "cuda")):
        b = _batch(3, dev)
        b.x = b.x * 2 - 1
        g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
        d = m.discriminator_loss(b, num_points=64, generator=g())
        gl = m.generator_loss(b, num_points=64, generator=g())
        res.append((d.loss if hasattr(d, "loss") else d, gl.loss if hasattr(gl, "loss") else gl,
                    m.sample(2, GRID.pos.double().to(dev), generator=g())))
    for a, b in zip(*res):
        _close(a, b)


def test_fps_and_knn_match_the_cpu():
    pos = GRID.pos.double()
    batch = torch.zeros(pos.size(0), dtype=torch.long)
    for random_start in (False, True):
        a = fps(pos, batch, num=20, manifold="sphere", random_start=random_start,
                generator=torch.Generator().manual_seed(1), backend="torch")
        b = fps(pos.cuda(), batch.cuda(), num=20, manifold="sphere", random_start=random_start,
                generator=torch.Generator().manual_seed(1), backend="torch")
        assert b.is_cuda and torch.equal(a, b.cpu())
    # kNN (the reference's matrix products on CUDA): the same neighbours, up to the order of exact ties.
    grid = LatLonGrid.regular(91, 180).pos.double()
    q = Sphere().random(3000, generator=torch.Generator().manual_seed(0)).double()
    for x, y in ((pos, pos[::3]), (grid, q)):
        a = knn(x, y, 4, manifold="sphere", backend="torch")
        b = knn(x.cuda(), y.cuda(), 4, manifold="sphere", backend="torch")
        assert b.is_cuda
        da = (x[a[1]] - y[a[0]]).square().sum(-1)
        db = (x[b[1].cpu()] - y[b[0].cpu()]).square().sum(-1)
        torch.testing.assert_close(db, da, rtol=0, atol=1e-12)


def test_vamoh_module_trains_on_a_gpu_and_resumes(tmp_path):
    from tests.training._train_tiny import TINY, dataset

    from pcfunc.training import FunctionDataModule, VaMoHModule, fit, make_trainer

    def run(out, steps, resume=False):
        torch.manual_seed(0)
        module = VaMoHModule.from_config("era5", lr=1e-3, warmup_steps=1, seed=0, **TINY)
        trainer = make_trainer(out, max_steps=steps, checkpoint_every=2, accelerator="gpu", devices=1,
                               progress_bar=False, tensorboard=False, log_every=1, limit_val_batches=0)
        fit(trainer, module, FunctionDataModule(dataset(), batch_size=4, seed=1), resume=resume)
        return module

    full = run(tmp_path / "a", 4)
    run(tmp_path / "b", 2)
    resumed = run(tmp_path / "b", 4, resume=True)
    for (name, p), q in zip(full.named_parameters(), resumed.parameters()):
        torch.testing.assert_close(q.detach().cpu(), p.detach().cpu(), msg=name)
    assert all(bool(torch.isfinite(p).all()) for p in full.parameters())
