"""A batched linear layer with a very wide output and few inputs per call: a hypernetwork's last layer.

VaMoH's ERA5 hypernetworks end in ``K x 24,833 x 512`` weights (38 M numbers, 153 MB) applied to a batch of
16 latents. Autograd's weight gradient of that layer is a fresh 153 MB tensor every step, one product of
inner size :math:`B` (16). On the CPU both are slow in ways that have nothing to do with arithmetic: the
fresh tensor is mapped by the kernel 4 KiB page by page on first write (about 70 ms for 153 MB on a
2-core virtual machine), and the skinny product runs at a fraction of the machine's speed when the
whole output is one call. :func:`wide_linear` computes the same values with its own backward: the weight
gradient is written block by block into a buffer that asks the kernel for transparent huge pages (Linux
``madvise(MADV_HUGEPAGE)``; nothing changes elsewhere or when the kernel declines). Measured on 2 AVX2
cores, VaMoH ERA5 at batch 16, the gradient alone: 102-114 ms with autograd's product into a fresh tensor,
43-75 ms here once the kernel has huge pages to give (the first calls of a process can be slower while it
compacts memory); the hypernetwork's forward and backward together went from 167-172 to 102-112 ms.

A fresh buffer still pays its page faults (or the kernel's compaction) once per step. So on the CPU the
weight gradient's buffer is also recycled: it is handed out from a small pool, and returns to it when the
gradient is freed (``optimizer.zero_grad(set_to_none=True)``, or the accumulated gradient replacing it);
the next step writes into memory that is already mapped. Measured in a VaMoH ERA5 training step at batch
16 (in-process A/B, 4 alternating rounds of 5 steps, 2 AVX2 cores): the weight gradient 95 -> 30 ms
(median), the whole step 0.834 -> 0.725 s. The pool keeps at most one free buffer per size;
:func:`release_gradient_buffers` gives them back to the system.
"""

from __future__ import annotations

import ctypes
import math
import sys
import threading
import weakref
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from ._custom_ops import exact_dtypes

__all__ = ["wide_linear", "release_gradient_buffers"]

#: Output rows of the weight gradient computed per product (blocks of ``rows x in`` numbers).
_ROWS = 1024
#: Weight gradients at least this large come from the pool, advised for huge pages (smaller ones are
#: recycled by the C allocator itself).
_HUGE_MIN_BYTES = 32 << 20
_MADV_HUGEPAGE = 14
_PAGE = 4096
_madvise = None


def _advise_huge_pages(start: int, nbytes: int) -> None:
    """Ask Linux to back the (not yet touched) memory at ``start`` with transparent huge pages; a no-op
    elsewhere."""
    global _madvise
    if _madvise is None:
        _madvise = False
        if sys.platform.startswith("linux"):
            try:
                fn = ctypes.CDLL(None, use_errno=True).madvise
                fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
                fn.restype = ctypes.c_int
                _madvise = fn
            except (OSError, AttributeError):
                pass
    if not _madvise:
        return
    end = start + nbytes
    first = -(-start // _PAGE) * _PAGE
    last = end // _PAGE * _PAGE
    if last > first:
        _madvise(first, last - first, _MADV_HUGEPAGE)  # advice only: a refusal changes nothing


_NUMPY_DTYPES = {torch.float32: np.float32, torch.float64: np.float64, torch.float16: np.float16}


class _BufferPool:
    """Large CPU buffers handed out as tensors and taken back when their storage is freed.

    A buffer is a NumPy array that lives in the pool; each tensor handed out is made with
    :func:`torch.from_numpy` from a fresh view of it, so the tensor's storage holds that view, and the view
    dies only with the storage (whichever tensors share it: ``.grad``, its detached copies). A finaliser on
    the view puts the buffer back, so memory is reused only once nothing can read it. At most ``max_free``
    free buffers are kept per (size, dtype); others go back to the system.
    """

    def __init__(self, max_free: int = 1) -> None:
        self.max_free = max_free
        self._free: Dict[Tuple[int, torch.dtype], List[np.ndarray]] = {}
        # Re-entrant: a garbage collection inside a locked block may free a gradient and call _give_back.
        self._lock = threading.RLock()

    def take(self, shape: Sequence[int], dtype: torch.dtype) -> Tensor:
        numel = math.prod(shape)
        if numel * dtype.itemsize < _HUGE_MIN_BYTES:  # the C allocator recycles these itself
            return torch.empty(*shape, dtype=dtype)
        np_dtype = _NUMPY_DTYPES.get(dtype)
        if np_dtype is None:  # e.g. bfloat16: a fresh buffer, advised
            out = torch.empty(*shape, dtype=dtype)
            _advise_huge_pages(out.data_ptr(), numel * dtype.itemsize)
            return out
        key = (numel, dtype)
        with self._lock:
            free = self._free.get(key)
            base = free.pop() if free else None
        if base is None:
            base = np.empty(numel, dtype=np_dtype)
            _advise_huge_pages(base.ctypes.data, base.nbytes)
        view = base[:]
        weakref.finalize(view, self._give_back, key, base).atexit = False
        return torch.from_numpy(view).view(*shape)

    def _give_back(self, key: Tuple[int, torch.dtype], base: np.ndarray) -> None:
        with self._lock:
            free = self._free.setdefault(key, [])
            if len(free) < self.max_free:
                free.append(base)

    def clear(self) -> None:
        with self._lock:
            self._free.clear()

    def num_free(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._free.values())


_pool = _BufferPool()


def release_gradient_buffers() -> None:
    """Give the free weight-gradient buffers kept for reuse back to the system.

    On the CPU the weight gradient of a :class:`~pcfunc.nn.HyperNetwork`'s last layer (153 MB for
    VaMoH's ERA5 configuration) is written into a recycled buffer rather than fresh memory, which spares
    every training step the kernel's page faults. When a gradient is freed its buffer stays in a pool (at
    most one per size) for the next step. Call this when training is over to return that memory; buffers
    still in use as gradients are unaffected and are freed normally.
    """
    _pool.clear()


def _weight_grad(grad: Tensor, h: Tensor) -> Tensor:
    """``grad @ h^T`` (``[K, P, B] x [K, B, I]``) into a ``[K, P, I]`` buffer from the pool, block by block."""
    hT = h.transpose(1, 2)
    if grad.device.type != "cpu":
        return torch.bmm(grad, hT)
    K, P, _ = grad.shape
    out = _pool.take((K, P, h.size(1)), grad.dtype)
    for s in range(0, P, _ROWS):
        torch.bmm(grad[:, s:s + _ROWS], hT, out=out[:, s:s + _ROWS])
    return out


def _product(h: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """``baddbmm(bias, weight, h)``, on the CPU by blocks of output rows (a block of the weights stays in
    cache while the B columns read it; VaMoH ERA5 at batch 16: 32.6 -> 24.3 ms). Not differentiable."""
    K, P, _ = weight.shape
    if weight.device.type != "cpu" or P <= _ROWS:
        return torch.baddbmm(bias.unsqueeze(-1), weight, h)
    out = torch.empty(K, P, h.size(2), dtype=torch.result_type(weight, h), device=weight.device)
    for s in range(0, P, _ROWS):
        torch.baddbmm(bias[:, s:s + _ROWS].unsqueeze(-1), weight[:, s:s + _ROWS], h, out=out[:, s:s + _ROWS])
    return out


class _WideLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h: Tensor, weight: Tensor, bias: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(h, weight)
        return _product(h, weight, bias)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tuple[Optional[Tensor], ...]:  # type: ignore[override]
        h, weight = ctx.saved_tensors
        grad_h = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_h = torch.bmm(weight.transpose(1, 2), grad)
        if ctx.needs_input_grad[1]:
            # Under create_graph (a double backward) the product must be differentiable: no out= blocks.
            grad_w = torch.bmm(grad, h.transpose(1, 2)) if torch.is_grad_enabled() else _weight_grad(grad, h)
        if ctx.needs_input_grad[2]:
            grad_b = grad.sum(-1)
        return grad_h, grad_w, grad_b


def wide_linear(h: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    r"""Batched :math:`W_k \mathbf h_k + \mathbf b_k` for :math:`k = 1, \dots, K`, i.e.
    ``torch.baddbmm(bias.unsqueeze(-1), weight, h)``, with a backward suited to a wide, skinny layer.

    Values and gradients are those of ``baddbmm``; only how the weight gradient is computed and stored
    differs (see the module notes). Under autocast, or with mixed dtypes, it is ``baddbmm`` itself.

    Args:
        h (Tensor): Inputs as columns, :math:`(K, I, B)`.
        weight (Tensor): :math:`(K, P, I)`.
        bias (Tensor): :math:`(K, P)`.

    Returns:
        Tensor: :math:`(K, P, B)`.
    """
    if not exact_dtypes(weight, h, bias):
        return torch.baddbmm(bias.unsqueeze(-1), weight, h)
    if not torch.is_grad_enabled() or not (h.requires_grad or weight.requires_grad or bias.requires_grad):
        return _product(h, weight, bias)
    return _WideLinear.apply(h, weight, bias)
