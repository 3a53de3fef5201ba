"""The RG shortcut, ``GN(ReLU(x))`` (optionally ``+ x``), in two implementations.

``reference`` is the plain op sequence (ReLU, ``F.group_norm``, add). Autograd then keeps
the ReLU output alive for backward: one extra activation the size of the block input per
block, on top of the block input that ``conv1`` already keeps.

``lean`` is one autograd function that saves only the block input (already kept by
``conv1``) and the per-group mean and reciprocal std, and recomputes ``ReLU`` and the
normalized tensor in backward. Statistics are computed in float32 whatever the input
dtype, so it is AMP-safe. The reference path stays for tracing, export and as the
ground truth in tests.
"""
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ReLUGroupNorm", "rg_shortcut_reference", "rg_shortcut_lean"]


def rg_shortcut_reference(x, num_groups, weight, bias, eps, add_identity=False):
    """``GN(ReLU(x)) (+ x)`` with plain PyTorch ops."""
    out = F.group_norm(F.relu(x), num_groups, weight, bias, eps)
    return out + x if add_identity else out


def _group_view(t, num_groups):
    return t.reshape(t.shape[0], num_groups, -1)


def _affine_shape(x):
    return (1, x.shape[1]) + (1,) * (x.dim() - 2)


class _LeanRGShortcut(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, num_groups, eps, add_identity):
        r = _group_view(torch.relu(x).float(), num_groups)
        var, mean = torch.var_mean(r, dim=2, unbiased=False, keepdim=True)
        rstd = torch.rsqrt(var + eps)
        xhat = ((r - mean) * rstd).reshape(x.shape)
        out = xhat * weight.float().reshape(_affine_shape(x)) + bias.float().reshape(_affine_shape(x))
        if add_identity:
            out = out + x.float()
        ctx.save_for_backward(x, weight, mean, rstd)
        ctx.num_groups = num_groups
        ctx.add_identity = add_identity
        return out.to(x.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        x, weight, mean, rstd = ctx.saved_tensors
        g = ctx.num_groups
        gy = grad_out.float()
        positive = x > 0
        xhat = (_group_view(torch.relu(x).float(), g) - mean) * rstd  # recomputed, (N, G, M)
        reduce_dims = [0] + list(range(2, x.dim()))
        gy_g = _group_view(gy, g)
        grad_weight = grad_bias = None
        if ctx.needs_input_grad[1]:
            grad_weight = (gy_g * xhat).reshape(x.shape).sum(reduce_dims).to(weight.dtype)
        if ctx.needs_input_grad[2]:
            grad_bias = gy.sum(reduce_dims).to(weight.dtype)
        grad_x = None
        if ctx.needs_input_grad[0]:
            dxhat = _group_view(gy * weight.float().reshape(_affine_shape(x)), g)
            mean_d = dxhat.mean(dim=2, keepdim=True)
            mean_dx = (dxhat * xhat).mean(dim=2, keepdim=True)
            dr = (rstd * (dxhat - mean_d - xhat * mean_dx)).reshape(x.shape)
            grad_x = torch.where(positive, dr, torch.zeros((), dtype=dr.dtype, device=dr.device))
            if ctx.add_identity:
                grad_x = grad_x + gy
            grad_x = grad_x.to(x.dtype)
        return grad_x, grad_weight, grad_bias, None, None, None


def rg_shortcut_lean(x, num_groups, weight, bias, eps, add_identity=False):
    """``GN(ReLU(x)) (+ x)`` saving only ``x`` and per-group statistics for backward."""
    return _LeanRGShortcut.apply(x, weight, bias, num_groups, eps, add_identity)


def _exporting():
    return torch.jit.is_tracing() or torch.jit.is_scripting() or torch.onnx.is_in_onnx_export()


class ReLUGroupNorm(nn.GroupNorm):
    """``GroupNorm(ReLU(x))``, optionally plus ``x``: the paper's RG shortcut.

    Subclasses ``nn.GroupNorm`` so its parameters are named and initialised like any
    GroupNorm, and Detectron2's FrozenBN conversion leaves it alone.

    Args:
        impl: "reference", "lean", or "auto" (lean on CUDA while autograd records,
            reference on the CPU, in inference and while tracing or exporting).
    """

    def __init__(self, num_groups, num_channels, eps=1e-5, impl="auto"):
        super().__init__(num_groups, num_channels, eps=eps, affine=True)
        assert impl in ("auto", "reference", "lean"), impl
        self.impl = impl

    def _use_lean(self, x):
        if self.impl == "reference" or _exporting():
            return False
        if not (torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad)):
            return False
        return self.impl == "lean" or x.is_cuda

    def forward(self, x, add_identity: bool = False):
        fn = rg_shortcut_lean if self._use_lean(x) else rg_shortcut_reference
        return fn(x, self.num_groups, self.weight, self.bias, self.eps, add_identity)

    def extra_repr(self):
        return super().extra_repr() + f", impl={self.impl}"
