"""Bottleneck blocks for every variant, driven by the table in ``variants.py``.

Residual branch ``F`` (ResNet's, except where a variant's row says otherwise)::

    a = ReLU(BN1(conv1x1(x)))                 # then a = GN(a) if relu_gn (2GN)
    b = ReLU(BN2(conv3x3(a)) + inner(a))      # inner(a) = GN(a) if inner_rg, else 0
                                              # then b = GN(b) if relu_gn
    F = BN3(conv1x1(b))                       # times SE(F) when SE is on

Block output: ``f(F + h(x))`` with ``h`` and ``f`` from the row; projection blocks use
``h(x) = BN(conv1x1_stride(x))`` in every variant.

Decisions (docs/ARCHITECTURE.md):

* The inner RG shortcut sits *before* the residual path's own ReLU, which stays where
  ResNet has it: ``b = ReLU(BN2(conv3x3(a)) + GN(a))``. ``GN(ReLU(a)) = GN(a)`` since
  ``a`` is already a ReLU output.
* The inner RG shortcut exists only where the 3x3 conv keeps the shape (stride 1): with
  the stride in the 3x3 conv (``stride_in_1x1=False``) it is absent from the first block
  of res3, res4 and res5.
* RBS's shortcut norm is a BatchNorm of the block's BN kind (FrozenBN when the backbone
  is frozen, SyncBN when synced), and a trainable ``BN`` when ``norm`` is not a BN at all
  (GN): RBS means ReLU + *Batch*Norm whatever the rest of the network uses.

Parameter names of the shared layers (``conv1..3`` with their ``norm``, ``shortcut``) are
Detectron2's, so ``original`` is interchangeable with ``build_resnet_backbone``.
"""
import fvcore.nn.weight_init as weight_init
import torch.nn.functional as F
from torch import nn

from detectron2.layers import CNNBlockBase, Conv2d, get_norm

from .shortcuts import ReLUGroupNorm
from .spec import BATCH_NORMS

__all__ = ["RGSBottleneckBlock", "PreactBottleneckBlock", "SqueezeExcitation", "add_variant_layers",
           "variant_forward", "preact_forward", "batch_norm_kind"]

def batch_norm_kind(norm):
    """The BatchNorm flavour that goes with ``norm`` (for RBS's shortcut): itself, or "BN"."""
    return norm if isinstance(norm, str) and norm in BATCH_NORMS else "BN"


class SqueezeExcitation(nn.Module):
    """Channel attention on the residual branch (Hu et al.; the paper's Table 9)."""

    def __init__(self, channels, reduction):
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.fc1 = nn.Conv2d(channels, hidden, kernel_size=1)
        self.fc2 = nn.Conv2d(hidden, channels, kernel_size=1)

    def forward(self, x):
        s = F.adaptive_avg_pool2d(x, 1)
        s = self.fc2(F.relu(self.fc1(s)))
        return x * s.sigmoid()


def add_variant_layers(block, spec, *, projection, stride_3x3, out_channels, bottleneck_channels, batch_norm):
    """Give ``block`` the layers its variant's row adds to a ResNet bottleneck.

    Shared by the Detectron2 block and the torchvision-named ImageNet block, so both hold
    the same layers under the same names and compute the same :func:`variant_forward`.
    ``batch_norm(channels)`` makes RBS's BatchNorm. Group counts were validated by the spec.
    """
    rule = spec.variant
    groups = spec.gn_groups
    block.relu_gn, block.post = rule.relu_gn, rule.post
    # The nonlinear shortcut replaces the identity only where shapes match.
    block.shortcut_op = "projection" if projection else rule.shortcut
    if block.shortcut_op == "RG":
        scale = 0.0 if spec.rg_init == "zero" else 1.0
        block.shortcut_norm = ReLUGroupNorm(groups, out_channels, impl=spec.shortcut_impl, init_scale=scale)
    elif block.shortcut_op == "G":
        block.shortcut_norm = nn.GroupNorm(groups, out_channels)
    elif block.shortcut_op == "RB":
        block.shortcut_norm = batch_norm(out_channels)
    block.keep_identity = rule.keep_identity and not projection
    block.has_inner = rule.inner_rg and stride_3x3 == 1
    if block.has_inner:
        block.inner_norm = ReLUGroupNorm(groups, bottleneck_channels, impl=spec.shortcut_impl)
    if rule.relu_gn:
        block.relu_norm1 = nn.GroupNorm(groups, bottleneck_channels)
        block.relu_norm2 = nn.GroupNorm(groups, bottleneck_channels)
    if rule.post == "rg":
        block.output_norm = ReLUGroupNorm(groups, out_channels, impl=spec.shortcut_impl)
    block.se = SqueezeExcitation(out_channels, spec.se_reduction) if spec.se_reduction else None


def variant_forward(block, x, conv_bn1, conv_bn2, conv_bn3, projection):
    """The equations of the module docstring; ``conv_bnK`` compute BN(convK(.))."""
    a = F.relu_(conv_bn1(x))
    if block.relu_gn:
        a = block.relu_norm1(a)
    b = conv_bn2(a)
    if block.has_inner:
        b = b + block.inner_norm(a)
    b = F.relu_(b)
    if block.relu_gn:
        b = block.relu_norm2(b)
    out = conv_bn3(b)
    if block.se is not None:
        out = block.se(out)

    op = block.shortcut_op
    if op == "projection":
        out = out + projection(x)
    elif op == "identity":
        out = out + x
    elif op == "RG":  # GN(ReLU(x)), with the identity fused in for Res-RGS
        out = out + block.shortcut_norm(x, add_identity=block.keep_identity)
    else:
        h = block.shortcut_norm(F.relu(x) if op == "RB" else x)
        out = out + (h + x if block.keep_identity else h)

    if block.post == "relu":
        out = F.relu_(out)
    elif block.post == "rg":
        out = block.output_norm(out)
    return out


class RGSBottleneckBlock(CNNBlockBase):
    """One bottleneck block of any non-preactivation variant of ``spec``."""

    def __init__(self, in_channels, out_channels, *, bottleneck_channels, spec, stride=1, dilation=1):
        super().__init__(in_channels, out_channels, stride)
        norm = spec.norm
        projection = in_channels != out_channels
        self.shortcut = (
            Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False,
                   norm=get_norm(norm, out_channels))
            if projection else None
        )
        stride_1x1, stride_3x3 = (stride, 1) if spec.stride_in_1x1 else (1, stride)
        self.conv1 = Conv2d(
            in_channels, bottleneck_channels, kernel_size=1, stride=stride_1x1, bias=False,
            norm=get_norm(norm, bottleneck_channels),
        )
        self.conv2 = Conv2d(
            bottleneck_channels, bottleneck_channels, kernel_size=3, stride=stride_3x3,
            padding=1 * dilation, bias=False, groups=spec.num_groups, dilation=dilation,
            norm=get_norm(norm, bottleneck_channels),
        )
        self.conv3 = Conv2d(
            bottleneck_channels, out_channels, kernel_size=1, bias=False, norm=get_norm(norm, out_channels),
        )
        for layer in [self.conv1, self.conv2, self.conv3, self.shortcut]:
            if layer is not None:
                weight_init.c2_msra_fill(layer)
        add_variant_layers(
            self, spec, projection=projection, stride_3x3=stride_3x3, out_channels=out_channels,
            bottleneck_channels=bottleneck_channels, batch_norm=lambda c: get_norm(batch_norm_kind(norm), c),
        )

    def forward(self, x):
        return variant_forward(self, x, self.conv1, self.conv2, self.conv3, self.shortcut)


class PreactBottleneckBlock(CNNBlockBase):
    """Pre-activation bottleneck (He et al., ECCV 2016), the paper's "Preact" row.

    ``norm_k`` precede ``conv_k``; the identity is added with no post-activation. A
    projection shortcut sees the pre-activated input ``ReLU(norm1(x))``.

    ``preactivate_input=False`` is He et al.'s first unit after the stem: the stem's own
    BN-ReLU is its pre-activation, so the block has no ``norm1`` and both paths see ``x``.
    """

    def __init__(self, in_channels, out_channels, *, bottleneck_channels, spec, stride=1, dilation=1,
                 preactivate_input=True):
        super().__init__(in_channels, out_channels, stride)
        norm = spec.norm
        stride_1x1, stride_3x3 = (stride, 1) if spec.stride_in_1x1 else (1, stride)
        self.norm1 = get_norm(norm, in_channels) if preactivate_input else None
        self.conv1 = Conv2d(in_channels, bottleneck_channels, 1, stride=stride_1x1, bias=False)
        self.norm2 = get_norm(norm, bottleneck_channels)
        self.conv2 = Conv2d(
            bottleneck_channels, bottleneck_channels, 3, stride=stride_3x3, padding=dilation,
            bias=False, groups=spec.num_groups, dilation=dilation,
        )
        self.norm3 = get_norm(norm, bottleneck_channels)
        self.conv3 = Conv2d(bottleneck_channels, out_channels, 1, bias=False)
        self.shortcut = (
            Conv2d(in_channels, out_channels, 1, stride=stride, bias=False) if in_channels != out_channels else None
        )
        for layer in [self.conv1, self.conv2, self.conv3, self.shortcut]:
            if layer is not None:
                weight_init.c2_msra_fill(layer)
        self.se = SqueezeExcitation(out_channels, spec.se_reduction) if spec.se_reduction else None

    def forward(self, x):
        return preact_forward(self, x, self.norm1, self.conv1, self.norm2, self.conv2, self.norm3, self.conv3,
                              self.shortcut)


def preact_forward(block, x, norm1, conv1, norm2, conv2, norm3, conv3, projection):
    """Pre-activation block; shared with the ImageNet classifier's torchvision-named block."""
    pre = F.relu(norm1(x)) if norm1 is not None else x
    out = conv1(pre)
    out = conv2(F.relu_(norm2(out)))
    out = conv3(F.relu_(norm3(out)))
    if block.se is not None:
        out = block.se(out)
    return out + (projection(pre) if projection is not None else x)
