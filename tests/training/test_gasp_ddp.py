"""GASP under distributed data parallel with one wrapper per network (2 CPU processes, gloo)."""

import os
from contextlib import nullcontext

import pytest
import torch
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel
from torch_geometric.data import Batch

from pcfunc.models import GASP
from pcfunc.training import parallelize_networks

from ._train_tiny import dataset

TINY = dict(latent_dim=4, hypernet_hidden=[8], inr_hidden=[8, 8], num_frequencies=4, disc_channels=[4, 8],
            weight_hidden=[4])


def _model():
    torch.manual_seed(0)
    # eval(): BatchNorm normalises with its running statistics, so a shard's loss does not depend on the
    # other shard and the reference below is a plain average of per-shard gradients.
    return GASP("sphere", **TINY).double().eval()


def _shard(rank):
    data = dataset(4)
    for d in data:
        d.x = (d.x * 2 - 1).double()
        d.pos = d.pos.double()
    real = Batch.from_data_list(data[2 * rank:2 * rank + 2])
    g = torch.Generator().manual_seed(10 + rank)
    return real, torch.randn(2, 4, generator=g, dtype=torch.float64), torch.randn(2, 4, generator=g,
                                                                                   dtype=torch.float64)


def _step(model, real, z_d, z_g, no_sync):
    """One discriminator step's and one generator step's gradients, as GASPModule takes them."""
    terms = model.discriminator_loss(real, z=z_d)
    terms.loss.backward()
    d_grads = [p.grad.clone() for p in model.discriminator.parameters()]
    untouched = all(p.grad is None for p in model.hypernet.parameters())
    model.zero_grad(set_to_none=True)
    for p in model.discriminator.parameters():
        p.requires_grad_(False)
    with no_sync():
        model.generator_loss(real, z=z_g).backward()
    g_grads = [p.grad.clone() for p in model.hypernet.parameters()]
    d_frozen = all(p.grad is None for p in model.discriminator.parameters())
    return d_grads, g_grads, untouched and d_frozen


def _worker(rank, world, port, out):
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    model = _model()
    wrappers = parallelize_networks(model, ("hypernet", "discriminator"),
                                    lambda m: DistributedDataParallel(m, find_unused_parameters=False))
    kinds = sorted((name, type(w).__name__, w.module is getattr(model, name)) for name, w in wrappers.items())
    # The wrappers are not submodules: the state dict keeps its names.
    names = sorted(model.state_dict())
    res = _step(model, *_shard(rank), wrappers["discriminator"].no_sync)
    out[rank] = (*res, kinds, names)
    dist.destroy_process_group()


@pytest.mark.slow
def test_gasp_separate_ddp_wrappers_average_each_networks_gradients():
    port = 29500 + (os.getpid() + 500) % 1000
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_worker, args=(2, port, out), nprocs=2, join=True)
        res = dict(out)
    refs = [_step(_model(), *_shard(r), nullcontext) for r in range(2)]
    model = _model()
    assert res[0][3] == [("discriminator", "DistributedDataParallel", True),
                         ("hypernet", "DistributedDataParallel", True)]
    assert res[0][4] == sorted(model.state_dict())
    for rank in range(2):
        d_grads, g_grads, untouched = res[rank][:3]
        assert untouched  # D step: no generator gradient; G step: the discriminator frozen
        # R1's double backward included, each network's gradient is the mean over the ranks' shards.
        for got, a, b in zip(d_grads, refs[0][0], refs[1][0]):
            torch.testing.assert_close(got, (a + b) / 2)
        for got, a, b in zip(g_grads, refs[0][1], refs[1][1]):
            torch.testing.assert_close(got, (a + b) / 2)
    # The shards differ, so the check above is not trivially satisfied.
    assert not torch.allclose(refs[0][0][0], refs[1][0][0])


def test_parallelize_routes_forward_calls_and_can_be_removed():
    # The model knows nothing of the wrappers: pcfunc.training routes its networks' calls through them.
    model = _model()
    calls = []

    class Spy(torch.nn.Module):
        def __init__(self, name, module):
            super().__init__()
            self.name, self.module = name, module

        def forward(self, *args):
            calls.append(self.name)
            return self.module(*args)

    real, z_d, _ = _shard(0)
    before = model.discriminator_loss(real, z=z_d).loss.detach()
    wrappers = {}
    parallelize_networks(model, ("hypernet", "discriminator"),
                         lambda m: wrappers.setdefault(m is model.hypernet, Spy(type(m).__name__, m)))
    after = model.discriminator_loss(real, z=z_d).loss.detach()
    assert calls == ["HyperNetwork", "PointConvNet", "PointConvNet"]  # fakes, R1 on real, fakes
    torch.testing.assert_close(after, before)
    parallelize_networks(model, ("hypernet", "discriminator"), None)
    calls.clear()
    model.discriminator_loss(real, z=z_d)
    assert calls == []
