"""Residual blocks for every variant, driven by the table in ``variants.py``.

Residual branch ``F`` (ResNet's, except where a variant's row says otherwise)::

    bottleneck (depth 26 and up)                basic block (depths 18, 34)
    a = ReLU(BN1(conv1x1(x)))                   a = ReLU(BN1(conv3x3(x)))
    b = ReLU(BN2(conv3x3(a)) + inner(a))        F = BN2(conv3x3(a)) + inner(a)
    F = BN3(conv1x1(b))

``inner(a) = GN(a)`` where the row has an inner RG shortcut and the second conv keeps the
shape (stride 1), else 0; 2GN puts a GN after each ReLU inside ``F``; SE scales ``F``.
Block output: ``f(F + h(x))`` with ``h`` and ``f`` from the row; projection blocks use
``h(x) = BN(conv1x1_stride(x))`` in every variant.

Decisions (docs/ARCHITECTURE.md):

* The inner RG shortcut sits *before* the bottleneck's own ReLU, which stays where ResNet
  has it. ``GN(ReLU(a)) = GN(a)`` since ``a`` is already a ReLU output. With the stride in
  the 3x3 conv (``stride_in_1x1=False``) it is absent from the first block of res3..res5.
* RBS's shortcut norm is a BatchNorm of the block's BN kind (FrozenBN when the backbone
  is frozen, SyncBN when synced), and a trainable ``BN`` when ``norm`` is not a BN at all
  (GN): RBS means ReLU + *Batch*Norm whatever the rest of the network uses.

Each block is built from the same conv layout (:func:`block_convs`) and the row's
:meth:`Variant.layers`; its decisions are attributes (a layer or None, a bool), so
TorchScript can compile every variant. Parameter names are Detectron2's (``conv1..3`` with
their ``norm``, ``shortcut``), so ``original`` is interchangeable with Detectron2's ResNet;
the classifier's torchvision-named blocks subclass these and override only the names.
"""
from typing import NamedTuple, Optional

import fvcore.nn.weight_init as weight_init
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import SqueezeExcitation

from detectron2.layers import CNNBlockBase, Conv2d, get_norm

from .shortcuts import ReLUGroupNorm
from .spec import BATCH_NORMS
from .variants import all_added_layers

__all__ = ["RGSBlock", "PreactBlock"]


def _squeeze_excitation(channels, reduction):
    """Channel attention on the residual branch (Hu et al.; the paper's Table 9), or None: torchvision's, ``x *
    sigmoid(fc2(ReLU(fc1(mean(x)))))`` with 1x1 convs ``fc1``/``fc2``."""
    return SqueezeExcitation(channels, max(channels // reduction, 1)) if reduction else None


class ConvLayout(NamedTuple):
    """One bias-free conv of a block."""

    in_channels: int
    out_channels: int
    kernel_size: int
    stride: int = 1
    dilation: int = 1
    groups: int = 1

    def make(self, conv_class=nn.Conv2d, norm=None):
        """The conv; with ``norm`` (Detectron2's ``Conv2d``), that norm of its output channels inside."""
        extra = {} if norm is None else {"norm": get_norm(norm, self.out_channels)}
        return conv_class(self.in_channels, self.out_channels, self.kernel_size, stride=self.stride,
                          padding=self.dilation * (self.kernel_size // 2), dilation=self.dilation, groups=self.groups,
                          bias=False, **extra)


def block_convs(spec, in_channels, out_channels, bottleneck_channels, stride=1, dilation=1):
    """(the convs of the residual branch ``F`` in order, the 1x1 projection that replaces the identity where the
    shape changes or None): what every block of ``spec`` is made of."""
    projection = ConvLayout(in_channels, out_channels, 1, stride) if in_channels != out_channels else None
    if spec.block == "basic":  # the spec refuses dilation and grouping here, as Detectron2's R18/R34
        return [ConvLayout(in_channels, out_channels, 3, stride), ConvLayout(out_channels, out_channels, 3)], projection
    stride_1x1, stride_3x3 = (stride, 1) if spec.stride_in_1x1 else (1, stride)
    return [
        ConvLayout(in_channels, bottleneck_channels, 1, stride_1x1),
        ConvLayout(bottleneck_channels, bottleneck_channels, 3, stride_3x3, dilation, spec.num_groups),
        ConvLayout(bottleneck_channels, out_channels, 1)
    ], projection


def _fill_as_detectron2(block):
    """MSRA-fill the convs in Detectron2's order. Its blocks create every conv first (each drawing
    PyTorch's default init), then fill ``conv1..3`` and ``shortcut``: the same order gives the same
    random draws, so under one seed ``original`` starts from Detectron2's very weights."""
    for conv in (block.conv1, block.conv2, block.conv3, block.shortcut):
        if conv is not None:
            weight_init.c2_msra_fill(conv)


class RGSBlock(CNNBlockBase):
    """A bottleneck or basic block (``spec.block``) of any non-preactivation variant of ``spec``."""

    def __init__(self, in_channels, out_channels, *, bottleneck_channels, spec, stride=1, dilation=1):
        super().__init__(in_channels, out_channels, stride)
        convs, projection = block_convs(spec, in_channels, out_channels, bottleneck_channels, stride, dilation)
        self.conv3 = None  # a basic block has two convs
        self._add_units(spec, convs, projection)
        self._add_variant_layers(spec, convs, identity_shape=projection is None)

    def _add_units(self, spec, convs, projection):
        """``shortcut`` and ``conv1..3``, Detectron2's convs that carry their norm, drawn as Detectron2 draws them."""
        self.shortcut = None if projection is None else projection.make(Conv2d, spec.norm)
        for k, conv in enumerate(convs, 1):
            setattr(self, f"conv{k}", conv.make(Conv2d, spec.norm))
        _fill_as_detectron2(self)

    def _add_variant_layers(self, spec, convs, identity_shape):
        """The layers the row adds (``Variant.layers``), and the row's decisions as plain attributes."""
        variant = spec.variant
        for name in all_added_layers():
            setattr(self, name, None)
        widths = {"out": convs[-1].out_channels, "inner": convs[0].out_channels}
        for name, kind, site in variant.layers(identity_shape, inner=convs[1].stride == 1, inner_relus=len(convs) - 1):
            channels = widths[site]
            if kind == "RB":
                layer = get_norm(spec.norm if spec.norm in BATCH_NORMS else "BN", channels)
            elif kind == "GN":
                layer = nn.GroupNorm(spec.gn_groups, channels)
            else:  # "RG": GN(ReLU(.)) in one module, the lean implementation's unit
                scale = 0.0 if name == "shortcut_norm" and spec.rg_init == "zero" else 1.0
                layer = ReLUGroupNorm(spec.gn_groups, channels, impl=spec.shortcut_impl, init_scale=scale)
            setattr(self, name, layer)
        self.se = _squeeze_excitation(convs[-1].out_channels, spec.se_reduction)
        self.keep_identity = variant.keep_identity and identity_shape
        self.shortcut_relu = variant.shortcut == "RB"  # an "RG" layer applies its own ReLU
        self.post_relu = variant.post == "relu"

    # The units of F and the projection, by Detectron2's names (the classifier overrides them).
    def conv_bn1(self, x):
        return self.conv1(x)

    def conv_bn2(self, x):
        return self.conv2(x)

    def conv_bn3(self, x):
        return self.conv3(x)

    def project(self, x) -> Optional[torch.Tensor]:
        return None if self.shortcut is None else self.shortcut(x)

    def forward(self, x):
        a = F.relu_(self.conv_bn1(x))
        if self.relu_norm1 is not None:
            a = self.relu_norm1(a)
        f = self.conv_bn2(a)
        if self.inner_norm is not None:
            f = self.inner_norm(a, False, f)  # f + GN(ReLU(a)), into f; GN(ReLU(a)) = GN(a)
        if self.conv3 is not None:  # bottleneck
            f = F.relu_(f)
            if self.relu_norm2 is not None:
                f = self.relu_norm2(f)
            f = self.conv_bn3(f)
        if self.se is not None:
            f = self.se(f)
        out = self.add_shortcut(f, x)
        if self.output_norm is not None:
            return self.output_norm(out)
        return F.relu_(out) if self.post_relu else out

    def add_shortcut(self, f, x):
        """``f + h(x)``, written into ``f`` (the branch's fresh output; Detectron2 adds in place too):
        ``h`` is the projection, the row's shortcut (RG: beside ``x`` for Res-RGS), or ``x``."""
        projected = self.project(x)
        if projected is not None:
            return f.add_(projected)
        norm = self.shortcut_norm
        if norm is None:
            return f.add_(x)
        if isinstance(norm, ReLUGroupNorm):
            return norm(x, self.keep_identity, f)
        # Other shortcuts; and RG under TorchScript, whose isinstance is False for every compiled type of a class
        # but the first (a second GN width): norm(x) is then GN(ReLU(x)) in reference ops, and x is added here.
        h = norm(F.relu(x) if self.shortcut_relu else x)
        return f.add_(h + x if self.keep_identity else h)


class PreactBlock(CNNBlockBase):
    """Pre-activation block (He et al., ECCV 2016), the paper's "Preact" row; bottleneck or basic.

    ``norm_k`` precede ``conv_k``; the identity is added with no post-activation. A
    projection shortcut sees the pre-activated input ``ReLU(norm1(x))``.

    ``preactivate_input=False`` is He et al.'s first unit after the stem: the stem's own
    BN-ReLU is its pre-activation, so the block has no ``norm1`` and both paths see ``x``.
    """

    def __init__(self, in_channels, out_channels, *, bottleneck_channels, spec, stride=1, dilation=1,
                 preactivate_input=True):
        super().__init__(in_channels, out_channels, stride)
        convs, projection = block_convs(spec, in_channels, out_channels, bottleneck_channels, stride, dilation)
        self.conv3 = None  # a basic block has two convs
        self._add_units(spec, convs, projection, preactivate_input)
        self.se = _squeeze_excitation(out_channels, spec.se_reduction)

    def _add_units(self, spec, convs, projection, preactivate_input):
        """``norm_k`` + ``conv_k`` (Detectron2's names), and ``shortcut``, a conv without norm."""
        self.shortcut = None if projection is None else projection.make(Conv2d)
        for k, conv in enumerate(convs, 1):
            setattr(self, f"norm{k}", get_norm(spec.norm, conv.in_channels) if k > 1 or preactivate_input else None)
            setattr(self, f"conv{k}", conv.make(Conv2d))
        _fill_as_detectron2(self)

    # The pre-activations and the projection, by Detectron2's names (the classifier overrides them).
    def preactivate(self, x):
        return x if self.norm1 is None else F.relu(self.norm1(x))

    def activate2(self, x):
        return F.relu_(self.norm2(x))

    def activate3(self, x):
        return F.relu_(self.norm3(x))

    def project(self, x) -> Optional[torch.Tensor]:
        return None if self.shortcut is None else self.shortcut(x)

    def forward(self, x):
        pre = self.preactivate(x)
        out = self.conv2(self.activate2(self.conv1(pre)))
        if self.conv3 is not None:  # bottleneck
            out = self.conv3(self.activate3(out))
        if self.se is not None:
            out = self.se(out)
        projected = self.project(pre)
        return out.add_(x if projected is None else projected)
