"""The RG shortcut added to the residual branch: ``residual + GN(ReLU(x)) (+ x)``, three ways.

``reference`` is the plain op sequence (ReLU, ``F.group_norm``, adds): the ground truth in
tests, and what tracing, scripting and ONNX export record. Autograd keeps the ReLU output
alive for backward: one extra activation the size of the block input per block.

``fused`` is the forward when nothing is differentiated (inference). On the CPU a fresh
tensor the size of a res2 activation costs more in page faults than the arithmetic on it, and
every op of the reference streams the whole tensor through memory again. The fused forward
works through ``x`` a few groups of one sample at a time (about :data:`CHUNK_BYTES`): ReLU,
the group statistics, normalisation, affine and the adds of a piece run while it is in the
cache, and the sum is written into ``residual`` in place, as Detectron2 adds its shortcut.
Per piece the ops are the reference's kernels on the same values, so the result equals the
reference's. On CUDA and under ``torch.compile`` it is one piece (inductor fuses the ops).

``lean`` is one autograd function on the fused forward that saves only the block input
(already kept by ``conv1``) and the per-group mean and reciprocal std, and recomputes
``ReLU`` and the normalized tensor in backward. Statistics are computed in float32 for half
and bfloat16 input (AMP-safe) and in the input's own dtype when it is wider (float64, for
gradcheck). Its backward is first-order only (``once_differentiable``): double backward
raises rather than returning wrong second derivatives.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

__all__ = ["ReLUGroupNorm", "rg_shortcut_reference", "rg_shortcut_fused", "rg_shortcut_lean", "SHORTCUT_IMPLS"]

SHORTCUT_IMPLS = ("auto", "reference", "lean")
# The fused forward's piece of x: within a core's L2 cache (1 MiB here; 0.5-2 MiB on current x86), from the
# ReLU to the add. Measured on a res2 block at 800x1216: 1-2 MiB pieces cost half of 8 MiB ones.
CHUNK_BYTES = 2**20


def rg_shortcut_reference(x, num_groups: int, weight: torch.Tensor, bias: torch.Tensor, eps: float,
                          add_identity: bool = False, residual: Optional[torch.Tensor] = None):
    """``residual + GN(ReLU(x)) (+ x)`` with plain PyTorch ops (what TorchScript compiles)."""
    out = F.group_norm(F.relu(x), num_groups, weight, bias, eps)
    out = out + x if add_identity else out
    return out if residual is None else residual.add_(out)


def _dims(x):
    """(N, C, H x W, the statistics' dtype: float32 for half/bfloat16 input (AMP-safe), the input's own when
    wider (float64))."""
    n, c = x.shape[:2]
    return n, c, x.numel() // (n * c), torch.promote_types(x.dtype, torch.float32)


def rg_shortcut_fused(x, num_groups, weight, bias, eps, add_identity=False, residual=None, with_stats=False):
    """``residual + GN(ReLU(x)) (+ x)`` a cache-sized piece at a time, into ``residual`` (new when None); with
    ``with_stats``, also the per-(sample, group) mean and 1/std of ``ReLU(x)``."""
    n, c, hxw, acc = _dims(x)
    per_group = c // num_groups
    out = torch.empty_like(x) if residual is None else residual
    # One piece on CUDA, while compiling, and where x fits in one; each thread works on its share of a piece.
    budget = 0 if x.is_cuda or torch.compiler.is_compiling() else CHUNK_BYTES * torch.get_num_threads()
    samples, groups = n, num_groups
    if budget and x.numel() * x.element_size() > budget:
        samples, groups = 1, max(1, budget // (per_group * hxw * x.element_size()))
    width, stats = groups * per_group, []
    affine = list(zip(weight.to(acc).split(width), bias.to(acc).split(width)))
    for xs, outs in zip(x.split(samples), out.split(samples)):
        for piece, target, (w, b) in zip(xs.split(width, 1), outs.split(width, 1), affine):
            k = piece.shape[1]
            y, *moments = torch.ops.aten.native_group_norm(
                torch.relu(piece).to(acc).contiguous(), w, b, piece.shape[0], k, hxw, k // per_group, eps)
            y = y.add_(piece) if add_identity else y
            target.copy_(y) if residual is None else target.add_(y)
            stats.append(moments)
    mean, rstd = (torch.cat(m, 1).view(n, num_groups) for m in zip(*stats))
    return (out, mean, rstd) if with_stats else out


class _LeanRGShortcut(torch.autograd.Function):
    """The fused forward; saves (x, weight, mean, rstd) and recomputes ReLU(x) in backward, which is
    PyTorch's own ``native_group_norm_backward``: the reference's cost, minus one stored activation."""

    @staticmethod
    def forward(ctx, x, weight, bias, num_groups, eps, add_identity):
        out, mean, rstd = rg_shortcut_fused(x, num_groups, weight, bias, eps, add_identity, with_stats=True)
        ctx.save_for_backward(x, weight, mean, rstd)
        ctx.num_groups, ctx.add_identity = num_groups, add_identity
        return out

    @staticmethod
    @once_differentiable  # mean/rstd are saved as constants: a second derivative would be silently wrong
    def backward(ctx, grad_out):
        x, weight, mean, rstd = ctx.saved_tensors
        n, c, hxw, acc = _dims(x)
        gy = grad_out.to(acc).contiguous()
        relu = torch.relu(x).to(acc).contiguous()
        gx, gw, gb = torch.ops.aten.native_group_norm_backward(gy, relu, mean, rstd, weight.to(acc), n, c, hxw,
                                                               ctx.num_groups, list(ctx.needs_input_grad[:3]))
        if gx is not None:
            gx = torch.ops.aten.threshold_backward(gx, x.to(acc), 0)  # ReLU's backward
            gx = (gx.add_(gy) if ctx.add_identity else gx).to(x.dtype)
        gw, gb = (g if g is None else g.to(weight.dtype) for g in (gw, gb))
        return gx, gw, gb, None, None, None


def rg_shortcut_lean(x, num_groups, weight, bias, eps, add_identity=False, residual=None):
    """``residual + GN(ReLU(x)) (+ x)`` saving only ``x`` and per-group statistics for backward."""
    out = _LeanRGShortcut.apply(x, weight, bias, num_groups, eps, add_identity)
    return out if residual is None else residual.add_(out)


class ReLUGroupNorm(nn.GroupNorm):
    """``GroupNorm(ReLU(x))``, optionally plus ``x``, added to a residual: the paper's RG shortcut.

    Subclasses ``nn.GroupNorm`` so its parameters are named and initialised like any
    GroupNorm, and Detectron2's FrozenBN conversion leaves it alone.

    Args:
        impl: "reference", "lean", or "auto". In autograd: lean where asked or on CUDA, else
            the reference ops; with nothing to differentiate (inference), the fused forward
            (either setting) or the reference ops ("reference"); always the reference ops
            while tracing, scripting or exporting to ONNX.
        init_scale: the weight's initial value (1 as any GroupNorm; 0 for ``rg_init="zero"``).
    """

    def __init__(self, num_groups, num_channels, eps=1e-5, impl="auto", init_scale=1.0):
        assert impl in SHORTCUT_IMPLS, impl
        self.impl = impl
        self.init_scale = init_scale  # before GroupNorm's __init__, which calls reset_parameters
        super().__init__(num_groups, num_channels, eps=eps, affine=True)

    def reset_parameters(self):
        """GroupNorm's (weight 1, bias 0), with the weight at ``init_scale``."""
        super().reset_parameters()
        nn.init.constant_(self.weight, self.init_scale)

    def forward(self, x, add_identity: bool = False, residual: Optional[torch.Tensor] = None):
        """``residual + GN(ReLU(x)) (+ x)``. ``residual``, when given, receives the sum in place: pass
        a fresh tensor nothing else reads (a block's own residual branch)."""
        # The one place the implementation is chosen. TorchScript compiles only the reference
        # ops: it skips the branch under ``not is_scripting()``, and the others with it.
        if not torch.jit.is_scripting():
            shortcut = self._implementation(x)
            return shortcut(x, self.num_groups, self.weight, self.bias, self.eps, add_identity, residual)
        return rg_shortcut_reference(x, self.num_groups, self.weight, self.bias, self.eps, add_identity, residual)

    @torch.jit.unused  # eager only (see forward)
    def _implementation(self, x):
        if self.impl == "reference" or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
            return rg_shortcut_reference
        if torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad):
            return rg_shortcut_lean if self.impl == "lean" or x.is_cuda else rg_shortcut_reference
        return rg_shortcut_fused

    def extra_repr(self):
        return super().extra_repr() + f", impl={self.impl}"
