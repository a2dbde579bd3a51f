"""The coordinate encoding as a model argument, and checkpoints saved under the models' old attribute names."""

import pytest
import torch

from pcfunc.nn import FourierFeatures, SphericalHarmonics, get_encoding

from .test_gasp import tiny as tiny_gasp
from .test_vamoh import GRID, batch
from .test_vamoh import tiny as tiny_vamoh


def test_get_encoding_builds_by_name_pair_or_returns_the_module():
    torch.manual_seed(0)
    f = get_encoding(("fourier", {"num_frequencies": 5, "sigma": 3.0}), 3)
    assert isinstance(f, FourierFeatures) and f.out_dim == 10 and f.in_dim == 3
    assert get_encoding("FOURIER", 2).in_dim == 2
    sh = get_encoding(["spherical_harmonics", {"lmax": 3}], 3)
    assert isinstance(sh, SphericalHarmonics) and sh.out_dim == 16
    assert get_encoding(sh, 3) is sh and get_encoding(None, 3) is None
    with pytest.raises(ValueError, match="unknown encoding 'wavelets'; known names"):
        get_encoding("wavelets", 3)
    with pytest.raises(ValueError, match=r"encoding must be a module, a name or a \(name, options dict\) pair"):
        get_encoding(("fourier", 5), 3)


@pytest.mark.parametrize("spec", [("spherical_harmonics", {"lmax": 3}), "module"])
def test_vamoh_uses_the_given_encoding_everywhere(spec):
    enc = SphericalHarmonics(3) if spec == "module" else spec
    m = tiny_vamoh(encoding=enc).eval()
    assert isinstance(m.encoding, SphericalHarmonics) and m.encoding.lmax == 3
    assert m.hypernet.target.encoding is m.encoding  # the generators and the categorical nets read the same gamma
    pos = GRID.pos.double()
    z = torch.randn(2, m.latent_dim, dtype=torch.float64)
    m.warmup = False
    torch.testing.assert_close(m.mixture_logits(z, pos), m.prior_c(SphericalHarmonics(3)(pos), z))
    # The INR's first layer reads the 16 harmonics: its weights are 16 wide.
    assert m.hypernet.target.layer_shapes[0] == (8, 16)
    out = m.reconstruct(batch(2))
    assert out.shape == (2 * pos.size(0), 1) and bool(torch.isfinite(out).all())


def test_gasp_uses_the_given_encoding():
    m = tiny_gasp(encoding=("spherical_harmonics", {"lmax": 2}))
    assert isinstance(m.hypernet.target.encoding, SphericalHarmonics)
    assert m.hypernet.target.layer_shapes[0][1] == 9


def test_checkpoints_under_the_old_names_load():
    # VaMoH's encoding was saved as `fourier`, GASP's hypernetwork as `generator`.
    torch.manual_seed(0)
    v = tiny_vamoh()
    state = {k.replace("encoding.", "fourier.", 1) if k.startswith("encoding.") else k: t
             for k, t in v.state_dict().items()}
    assert "fourier.B" in state and "encoding.B" not in state
    w = tiny_vamoh()
    w.load_state_dict(state)
    for k, t in v.state_dict().items():
        torch.testing.assert_close(w.state_dict()[k], t, msg=k)
    g = tiny_gasp()
    old = {("generator." + k[len("hypernet."):]) if k.startswith("hypernet.") else k: t
           for k, t in g.state_dict().items()}
    h = tiny_gasp()
    torch.nn.Module.load_state_dict(torch.nn.Sequential(h), {"0." + k: t for k, t in old.items()})  # nested too
    for k, t in g.state_dict().items():
        torch.testing.assert_close(h.state_dict()[k], t, msg=k)
    with pytest.warns(FutureWarning, match="use GASP.hypernet"):
        assert g.generator is g.hypernet
