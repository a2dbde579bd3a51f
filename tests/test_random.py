"""pcfunc._random: seeded draws on the generator's device, moved to the target device."""

import torch

from pcfunc import _random


def test_seeded_draws_are_the_generators_and_land_on_the_target_device():
    g = lambda: torch.Generator().manual_seed(4)  # noqa: E731
    # The same numbers as PyTorch's own draw with that generator ...
    torch.testing.assert_close(_random.randn((3, 2), g(), dtype=torch.float64), torch.randn(3, 2, generator=g(),
                                                                                             dtype=torch.float64))
    torch.testing.assert_close(_random.rand((5,), g()), torch.rand(5, generator=g()))
    assert torch.equal(_random.randint(9, (6,), g()), torch.randint(9, (6,), generator=g()))
    assert torch.equal(_random.randperm(7, g()), torch.randperm(7, generator=g()))
    probs = torch.tensor([[0.2, 0.5, 0.3], [1.0, 0.0, 0.0]])
    assert torch.equal(_random.multinomial(probs, 2, g()), torch.multinomial(probs, 2, generator=g()))
    # ... on another device than the generator's (PyTorch raises for a CUDA target and a CPU generator; see
    # tests/test_cuda.py).
    for fn, args in ((_random.randn, ((2, 3),)), (_random.rand, ((4,),))):
        out = fn(*args, g(), device="meta")
        assert out.device.type == "meta" and out.shape == args[0]
    assert _random.randint(5, (4,), g(), device="meta").device.type == "meta"
    assert _random.randperm(4, g(), device="meta").device.type == "meta"
    # Without a generator: PyTorch's global random state of the target device.
    torch.manual_seed(2)
    a = _random.randn((4,))
    torch.manual_seed(2)
    torch.testing.assert_close(a, torch.randn(4))
