"""The RG shortcut, ``GN(ReLU(x))`` (optionally ``+ x``), in two implementations.

``reference`` is the plain op sequence (ReLU, ``F.group_norm``, add). Autograd then keeps
the ReLU output alive for backward: one extra activation the size of the block input per
block, on top of the block input that ``conv1`` already keeps.

``lean`` is one autograd function that saves only the block input (already kept by
``conv1``) and the per-group mean and reciprocal std, and recomputes ``ReLU`` and the
normalized tensor in backward. Statistics are computed in float32 for half and bfloat16
input (AMP-safe) and in the input's own dtype when it is wider (float64, for gradcheck).
Its backward is first-order only (``once_differentiable``): double backward raises rather
than returning wrong second derivatives. The reference path stays for tracing, export and
as the ground truth in tests.
"""
import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

__all__ = ["ReLUGroupNorm", "rg_shortcut_reference", "rg_shortcut_lean", "SHORTCUT_IMPLS"]

SHORTCUT_IMPLS = ("auto", "reference", "lean")


def rg_shortcut_reference(x, num_groups: int, weight: torch.Tensor, bias: torch.Tensor, eps: float,
                          add_identity: bool = False):
    """``GN(ReLU(x)) (+ x)`` with plain PyTorch ops (what TorchScript compiles)."""
    out = F.group_norm(F.relu(x), num_groups, weight, bias, eps)
    return out + x if add_identity else out


def _stats_dtype(x):
    """float32 for half/bfloat16 input (AMP-safe), the input's own dtype when wider (float64)."""
    return torch.promote_types(x.dtype, torch.float32)


def _dims(x):
    n, c = x.shape[:2]
    return n, c, x.numel() // (n * c)


class _LeanRGShortcut(torch.autograd.Function):
    """Saves (x, weight, mean, rstd); ReLU(x) is recomputed in backward.

    The arithmetic is PyTorch's own fused group-norm kernels (``native_group_norm`` and its
    backward), so the lean path costs about what the reference ops cost, minus one stored
    activation.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, num_groups, eps, add_identity):
        acc = _stats_dtype(x)
        n, c, hxw = _dims(x)
        out, mean, rstd = torch.ops.aten.native_group_norm(
            torch.relu(x).to(acc).contiguous(), weight.to(acc), bias.to(acc), n, c, hxw, num_groups, eps)
        if add_identity:
            out = out.add_(x)
        ctx.save_for_backward(x, weight, mean, rstd)
        ctx.num_groups = num_groups
        ctx.add_identity = add_identity
        return out.to(x.dtype)

    @staticmethod
    @once_differentiable  # mean/rstd are saved as constants: a second derivative would be silently wrong
    def backward(ctx, grad_out):
        x, weight, mean, rstd = ctx.saved_tensors
        acc = _stats_dtype(x)
        n, c, hxw = _dims(x)
        gy = grad_out.to(acc).contiguous()
        gx, gw, gb = torch.ops.aten.native_group_norm_backward(
            gy,
            torch.relu(x).to(acc).contiguous(),
            mean,
            rstd,
            weight.to(acc),
            n,
            c,
            hxw,
            ctx.num_groups,
            list(ctx.needs_input_grad[:3]),
        )
        if gx is not None:
            gx = torch.ops.aten.threshold_backward(gx, x.to(acc), 0)  # ReLU's backward
            if ctx.add_identity:
                gx = gx.add_(gy)
            gx = gx.to(x.dtype)
        gw = gw.to(weight.dtype) if gw is not None else None
        gb = gb.to(weight.dtype) if gb is not None else None
        return gx, gw, gb, None, None, None


def rg_shortcut_lean(x, num_groups, weight, bias, eps, add_identity=False):
    """``GN(ReLU(x)) (+ x)`` saving only ``x`` and per-group statistics for backward."""
    return _LeanRGShortcut.apply(x, weight, bias, num_groups, eps, add_identity)


class ReLUGroupNorm(nn.GroupNorm):
    """``GroupNorm(ReLU(x))``, optionally plus ``x``: the paper's RG shortcut.

    Subclasses ``nn.GroupNorm`` so its parameters are named and initialised like any
    GroupNorm, and Detectron2's FrozenBN conversion leaves it alone.

    Args:
        impl: "reference", "lean", or "auto" (lean on CUDA while autograd records,
            reference on the CPU, in inference and while tracing, scripting or exporting).
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

    def forward(self, x, add_identity: bool = False):
        # The one place the implementation is chosen. TorchScript compiles only the reference
        # ops: it skips the branch under ``not is_scripting()``, and the lean function with it.
        if not torch.jit.is_scripting() and self._use_lean(x):
            return rg_shortcut_lean(x, self.num_groups, self.weight, self.bias, self.eps, add_identity)
        return rg_shortcut_reference(x, self.num_groups, self.weight, self.bias, self.eps, add_identity)

    @torch.jit.unused  # eager only (see forward)
    def _use_lean(self, x) -> bool:
        """Lean only in eager autograd: never while tracing or exporting to ONNX, nor without gradients."""
        if self.impl == "reference" or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
            return False
        if not (torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad)):
            return False
        return self.impl == "lean" or x.is_cuda

    def extra_repr(self):
        return super().extra_repr() + f", impl={self.impl}"
