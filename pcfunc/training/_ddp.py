"""Distributed data parallel for pcfunc's Lightning modules: one DDP wrapper per network where a module asks
for it (GASP's hypernetwork and discriminator), the whole module otherwise. The models know nothing of it."""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Sequence

from lightning.pytorch.strategies import DDPStrategy as _LightningDDP
from torch import nn
from torch.nn.parallel import DistributedDataParallel

__all__ = ["DDPStrategy", "parallelize_networks"]


class _Routed:
    """A network's ``forward`` that goes through its wrapper: ``wrapper(*args)`` calls the network again, and that
    inner call runs the network's own ``forward``."""

    def __init__(self, network: nn.Module, wrapper: nn.Module) -> None:
        self.network, self.wrapper, self.inside = network, wrapper, False

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.inside:
            return type(self.network).forward(self.network, *args, **kwargs)
        self.inside = True
        try:
            return self.wrapper(*args, **kwargs)
        finally:
            self.inside = False


def parallelize_networks(model: nn.Module, names: Sequence[str],
                         wrap: Optional[Callable[[nn.Module], nn.Module]]) -> Dict[str, nn.Module]:
    """Route every call of the networks ``model.<name>`` through ``wrap(network)``, one wrapper per network (e.g. a
    :class:`~torch.nn.parallel.DistributedDataParallel` each), without the model knowing: the model calls its
    networks as usual, each call enters the wrapper, which calls the network's own ``forward``. The wrappers are
    not submodules, so the state dict keeps its names. ``wrap=None`` removes the routing.

    Returns:
        dict: The wrappers by name (empty after ``wrap=None``).
    """
    wrappers = {}
    for name in names:
        network = getattr(model, name)
        if not isinstance(network, nn.Module):
            raise TypeError(f"model.{name} must be a torch.nn.Module, got {type(network).__name__}")
        network.__dict__.pop("forward", None)
        if wrap is not None:
            wrappers[name] = wrap(network)
            network.forward = _Routed(network, wrappers[name])
    return wrappers


class DDPStrategy(_LightningDDP):
    r"""Lightning's :class:`~lightning.pytorch.strategies.DDPStrategy`, with separate wrappers for modules that
    train several networks with separate optimisers.

    If the Lightning module has a method ``parallelize(wrap)``, this strategy does not wrap the module:
    it calls ``parallelize`` with a function that wraps one network in its own
    :class:`~torch.nn.parallel.DistributedDataParallel`, and the module routes each network's forward calls
    through its wrapper (:func:`parallelize_networks`). Each network then synchronises its gradients
    when, and only when, its own loss is backpropagated, with ``find_unused_parameters=False`` (every
    parameter of a network takes part in its own loss), and the wrappers are removed at the end of training,
    so checkpoints keep the plain parameter names. Other modules are wrapped whole, as Lightning does.

    :func:`~pcfunc.training.make_trainer` uses this strategy when more than one process trains.

    Args:
        **kwargs: Those of Lightning's ``DDPStrategy`` (``process_group_backend``, ``find_unused_parameters``
            for whole-module wrapping, ...).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._separate: Optional[Dict[str, nn.Module]] = None

    @property
    def separate_wrappers(self) -> Optional[Dict[str, nn.Module]]:
        """The per-network wrappers by name, or ``None`` when the module is wrapped whole (or not yet)."""
        return None if self._separate is None else dict(self._separate)

    def _wrap_one(self) -> Callable[[nn.Module], DistributedDataParallel]:
        kwargs = {**self._ddp_kwargs, "find_unused_parameters": False}
        device_ids = self.determine_ddp_device_ids()

        def wrap(network: nn.Module) -> DistributedDataParallel:
            return DistributedDataParallel(network, device_ids=device_ids, **kwargs)

        return wrap

    def configure_ddp(self) -> None:
        module = self.lightning_module
        parallelize = getattr(module, "parallelize", None)
        if parallelize is None:
            super().configure_ddp()
            return
        self._separate = parallelize(self._wrap_one())
        if not self._separate:
            raise RuntimeError(f"{type(module).__name__}.parallelize returned no wrappers")

    def teardown(self) -> None:
        module = self.lightning_module
        if self._separate is not None and module is not None:
            module.parallelize(None)
            self._separate = None
        super().teardown()
