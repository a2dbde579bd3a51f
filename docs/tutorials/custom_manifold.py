"""Tutorial: add your own manifold to pcfunc (the cylinder S^1 x [-1, 1]).

Run it with ``python docs/tutorials/custom_manifold.py`` (pcfunc importable).
The documentation page ``docs/tutorials/custom_manifold.rst`` shows this file
piece by piece, and the test suite imports it and calls :func:`main`.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

import pcfunc.ops
from pcfunc.manifolds import Manifold, register_manifold, resolve_manifold
from pcfunc.testing import check_manifold


class Cylinder(Manifold):
    r"""The cylinder :math:`S^1 \times [-1, 1]` of radius 1 with its geodesic distance.

    A point with angle :math:`t \in [0, 2\pi)` and height :math:`h \in [-1, 1]`
    is stored as :math:`(\cos t, \sin t, h) \in \mathbb{R}^3`. Unrolled, the
    cylinder is a flat strip, so the geodesic distance is

    .. math::
        d(x, y) = \sqrt{\delta_t^2 + \delta_h^2}, \qquad
        \delta_t = 2 \arcsin\big(\tfrac12 \lVert (x_1, x_2) - (y_1, y_2) \rVert_2\big), \quad
        \delta_h = |x_3 - y_3|,

    where :math:`\delta_t` is the angle between the two points' directions,
    computed from the chord of the unit circle.
    """

    name = "cylinder"
    ambient_dim = 3
    intrinsic_dim = 2  # a surface: GASP's discriminator takes 3**2 neighbours, not 3**3
    # cdist is not an increasing function of the ambient l2 distance (see main()),
    # so pcfunc.ops must not use the compiled l2 kernels for this manifold.
    ambient_euclidean_order = False

    def cdist(self, x: Tensor, y: Tensor) -> Tensor:
        # The first two coordinates are on the unit circle: angle from the chord, clamped
        # before asin (rounding can make a chord slightly longer than the diameter 2).
        chord = torch.cdist(x[..., :2], y[..., :2], compute_mode="donot_use_mm_for_euclid_dist")
        delta_t = 2.0 * torch.asin((0.5 * chord).clamp(max=1.0))
        # Height differences, broadcast over leading batch dimensions like torch.cdist.
        delta_h = (x[..., :, None, 2] - y[..., None, :, 2]).abs()
        return torch.sqrt(delta_t.square() + delta_h.square())

    def random(
        self,
        n: int,
        generator: Optional[torch.Generator] = None,
        dtype: Optional[torch.dtype] = None,
        device: Optional[Union[torch.device, str]] = None,
    ) -> Tensor:
        """Points uniform on the cylinder (uniform angle and height), shape ``(n, 3)``."""
        u = torch.rand(n, 2, generator=generator, dtype=dtype, device=device)
        t = u[:, 0] * (2.0 * math.pi)
        h = 2.0 * u[:, 1] - 1.0
        return self.embed(torch.stack((t, h), dim=-1))

    def grid(self, resolution: Union[int, Sequence[int]]) -> Tensor:
        """``n_t`` angles ``2 pi k / n_t`` times ``n_h`` heights ``linspace(-1, 1, n_h)``; angle slowest.

        An int ``n`` means ``(n, n)``. Shape ``(n_t * n_h, 3)``.
        """
        if isinstance(resolution, int) and not isinstance(resolution, bool):
            resolution = (resolution, resolution)
        n_t, n_h = (int(r) for r in resolution)
        if n_t < 1 or n_h < 1:
            raise ValueError(f"resolution must be two positive integers (n_t, n_h), got {resolution!r}")
        t = torch.arange(n_t, dtype=torch.float64) * (2.0 * math.pi / n_t)
        h = torch.linspace(-1.0, 1.0, n_h, dtype=torch.float64) if n_h > 1 else torch.zeros(1, dtype=torch.float64)
        u = torch.stack(torch.meshgrid(t, h, indexing="ij"), dim=-1).reshape(-1, 2)
        return self.embed(u).to(torch.get_default_dtype())

    def embed(self, u: Tensor) -> Tensor:
        """Chart coordinates ``(t, h)`` (radians, height), shape ``(*, 2)``, to ``(*, 3)``."""
        if u.size(-1) != 2:
            raise ValueError(f"u must have shape [..., 2] (angle, height), got {tuple(u.shape)}")
        t, h = u[..., 0], u[..., 1]
        return torch.stack((torch.cos(t), torch.sin(t), h), dim=-1)

    def unembed(self, x: Tensor) -> Tensor:
        """Ambient points ``(*, 3)`` to ``(t, h)`` with ``t`` in ``[0, 2 pi)``."""
        t = torch.remainder(torch.atan2(x[..., 1], x[..., 0]), 2.0 * math.pi)
        return torch.stack((t, x[..., 2]), dim=-1)

    def projx(self, x: Tensor) -> Tensor:
        """Nearest point of the cylinder: normalise ``(x_1, x_2)``, clamp the height to ``[-1, 1]``."""
        xy = x[..., :2]
        xy = xy / torch.linalg.vector_norm(xy, dim=-1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)
        return torch.cat((xy, x[..., 2:].clamp(-1.0, 1.0)), dim=-1)

    def check_point(self, x: Tensor, atol: Optional[float] = None) -> Tuple[bool, Optional[str]]:
        # The base class checks type, shape, dtype and finiteness first.
        ok, reason = super().check_point(x, atol)
        if not ok:
            return ok, reason
        atol = self.tolerance(x.dtype) if atol is None else atol
        if x.numel() == 0:
            return True, None
        err = (torch.linalg.vector_norm(x[..., :2], dim=-1) - 1.0).abs()
        if bool((err > atol).any()):
            return False, f"(x1, x2) must have unit norm; max error {float(err.max()):.3g} > atol={atol:g}"
        excess = float((x[..., 2].abs() - 1.0).max())
        if excess > atol:
            return False, f"height x3 must lie in [-1, 1]; exceeded by {excess:.3g} > atol={atol:g}"
        return True, None


def main() -> None:
    # [register]
    register_manifold("cylinder", Cylinder)
    print(resolve_manifold("cylinder"))  # Cylinder()
    # [register-end]

    # [check]
    check_manifold(Cylinder(), grid_resolution=(8, 5))  # raises AssertionError on a failed property
    print("check_manifold passed")
    # [check-end]

    # [order]
    cyl = Cylinder()
    a = cyl.embed(torch.tensor([[0.0, -1.0]]))              # t = 0,    h = -1
    b = cyl.embed(torch.tensor([[math.pi, -1.0]]))          # t = pi,   h = -1
    c = cyl.embed(torch.tensor([[math.pi / 2, 1.0]]))       # t = pi/2, h = 1
    print(f"ambient l2: |a-b| = {float(torch.dist(a, b)):.3f}, |a-c| = {float(torch.dist(a, c)):.3f}")
    print(f"geodesic:   d(a,b) = {float(cyl.dist(a, b)):.3f}, d(a,c) = {float(cyl.dist(a, c)):.3f}")
    # ambient l2 says b is nearer to a; the geodesic distance says c is.
    # [order-end]

    # [wrong-flag]
    class WrongCylinder(Cylinder):
        ambient_euclidean_order = True  # a false claim: check_manifold catches it

    try:
        check_manifold(WrongCylinder(), grid_resolution=(8, 5))
    except AssertionError as err:
        print(f"caught: {err}")
    else:
        raise RuntimeError("check_manifold should have rejected WrongCylinder")
    # [wrong-flag-end]

    # [ops]
    pos = cyl.grid((32, 9))                                  # 288 points
    idx = pcfunc.ops.fps(pos, num=16, manifold=cyl)          # 16 well-spread centroids
    edge_index = pcfunc.ops.knn(pos, pos[idx], k=8, manifold="cylinder")
    first = ", ".join(f"({t:.2f}, {h:+.2f})" for t, h in cyl.unembed(pos[idx[:3]]).tolist())
    print(f"fps: {idx.numel()} centroids, the first three (t, h): {first}")
    print(f"knn: edge_index {tuple(edge_index.shape)}, neighbours of centroid 0: {edge_index[1, :8].tolist()}")

    # Two clouds in one packed batch, as in a PyG Batch.
    gen = torch.Generator().manual_seed(0)
    pos2 = torch.cat((cyl.random(100, generator=gen), cyl.random(60, generator=gen)))
    batch = torch.cat((torch.zeros(100, dtype=torch.long), torch.ones(60, dtype=torch.long)))
    level = pcfunc.ops.sample_and_group(pos2, batch, k=8, ratio=0.25, manifold=cyl)
    print(f"sample_and_group: {level.num_centroids} centroids, edge_index {tuple(level.edge_index.shape)}")
    # [ops-end]

    # [models]
    from torch_geometric.data import Batch, Data

    from pcfunc.models import GASP, VaMoH
    from pcfunc.nn import LayerSpec

    # Functions on the cylinder: waves around it whose phase and amplitude vary, on a 32 x 9 grid.
    th = cyl.unembed(pos)
    phase, amp = torch.rand(64, 1, generator=gen) * 2 * math.pi, 0.1 + 0.2 * torch.rand(64, 1, generator=gen)
    values = (0.5 + amp * torch.sin(2 * th[:, 0] + phase) * th[:, 1]).unsqueeze(-1)    # (64, 288, 1) in [0, 1]
    data = [Data(x=v, pos=pos) for v in values]

    torch.manual_seed(0)
    vamoh = VaMoH("cylinder", encoder=[LayerSpec(16, 8, num_centroids=64), LayerSpec(16, 8, global_centroid=True)],
                  latent_dim=4, num_components=2, hypernet_hidden=(32,), generator_hidden=(16,), num_frequencies=16,
                  likelihood="gaussian", flow_layers=2)
    opt = torch.optim.Adam(vamoh.parameters(), lr=1e-3)
    for step in range(20):
        batch = Batch.from_data_list(data[(8 * step) % 64:(8 * step) % 64 + 8])
        loss = vamoh.elbo(batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    vamoh.eval()
    sample = vamoh.sample(1, pos)                                              # a function on the cylinder
    rec = vamoh.reconstruct(Batch.from_data_list(data[:2]))
    print(f"VaMoH: ELBO loss {loss.item():.1f} after 20 steps; sample {tuple(sample.shape)}, "
          f"reconstruction {tuple(rec.shape)}")

    # GASP needs its features in [-1, 1]; its discriminator takes 3**2 neighbours (intrinsic_dim = 2).
    gasp = GASP(cyl, latent_dim=4, hypernet_hidden=[32], inr_hidden=[16], num_frequencies=16, disc_channels=[8, 16],
                weight_hidden=[8])
    opt_g = torch.optim.Adam(gasp.hypernet.parameters(), lr=1e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(gasp.discriminator.parameters(), lr=4e-4, betas=(0.5, 0.999))
    for step in range(5):
        real = Batch.from_data_list([Data(x=2 * d.x - 1, pos=d.pos) for d in data[8 * step:8 * step + 8]])
        d_loss = gasp.discriminator_loss(real).loss
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
        g_loss = gasp.generator_loss(real)
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
    print(f"GASP: {gasp.dim}-D discriminator neighbourhoods of {gasp.discriminator.specs[0].num_neighbors}; "
          f"sample {tuple(gasp.sample(2, pos).shape)}")
    # [models-end]


if __name__ == "__main__":
    main()
