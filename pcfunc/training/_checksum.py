"""A checksum of every tensor of a checkpoint, written with it and verified when it is read: a flipped bit in a
stored tensor (bit rot, a bad copy) is an error naming the file, not a silently different model. (PyTorch's
archive reader does not check the zip records' CRCs.)"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Dict, Union

import torch

#: The checkpoint entry holding the digest (``"blake2b:<hex>"``).
DIGEST_KEY = "pcfunc_tensor_digest"


def tensor_digest(obj: Any) -> str:
    """BLAKE2b of every tensor in ``obj`` (nested dicts, lists and tuples; dict keys in sorted order), with each
    tensor's place, dtype and shape; values that are not tensors do not count. :data:`DIGEST_KEY` is left out."""
    h = hashlib.blake2b(digest_size=32)

    def walk(x: Any, where: str) -> None:
        if isinstance(x, torch.Tensor):
            t = x.detach().cpu().contiguous()
            h.update(f"{where}|{t.dtype}|{tuple(t.shape)}".encode())
            if t.numel():
                h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(x, dict):
            for k in sorted(x, key=str):
                if k != DIGEST_KEY:
                    walk(x[k], f"{where}/{k}")
        elif isinstance(x, (list, tuple)):
            for i, v in enumerate(x):
                walk(v, f"{where}[{i}]")

    walk(obj, "")
    return "blake2b:" + h.hexdigest()


def verify_digest(checkpoint: Dict[str, Any], path: Union[str, Path]) -> None:
    """Raise :class:`ValueError` naming ``path`` when ``checkpoint`` carries a digest its tensors do not match
    (a checkpoint without one, written before pcfunc wrote them, is accepted as it is)."""
    want = checkpoint.get(DIGEST_KEY) if isinstance(checkpoint, dict) else None
    if want is None:
        return
    if tensor_digest(checkpoint) != want:
        raise ValueError(f"checkpoint {str(path)!r} is corrupt: its tensors do not match the checksum written with "
                         "them (bit rot or a damaged copy); use an earlier checkpoint")
