"""Checkpoints written before a submodule was renamed load into the current model."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping

from torch import nn

__all__ = ["read_renamed_keys"]


class _RenamedKeys:
    """The load pre-hook of :func:`read_renamed_keys` (a class, so that a model holding it still pickles)."""

    def __init__(self, renames: Mapping[str, str]) -> None:
        self.pairs = [(old.rstrip(".") + ".", new.rstrip(".") + ".") for old, new in renames.items()]

    def __call__(self, module: nn.Module, state_dict: Dict[str, Any], prefix: str, local_metadata: Any, strict: bool,
                 missing_keys: List[str], unexpected_keys: List[str], error_msgs: List[str]) -> None:
        for old, new in self.pairs:
            start = prefix + old
            for key in [k for k in state_dict if k.startswith(start)]:
                value = state_dict.pop(key)
                state_dict.setdefault(prefix + new + key[len(start):], value)


def read_renamed_keys(module: nn.Module, renames: Mapping[str, str]) -> None:
    """Make ``module.load_state_dict`` (and any parent's) read the keys of submodules saved under their old
    names: ``renames`` maps an old attribute path to the new one (e.g. ``{"generator": "hypernet"}``), relative to
    ``module``. A key saved under the new name wins over the old one; nothing else changes."""
    module.register_load_state_dict_pre_hook(_RenamedKeys(renames))
