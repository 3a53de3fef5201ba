"""Bottleneck blocks for every variant of the paper (DESIGN.md section 2).

Residual branch (unchanged from ResNet except where a variant says otherwise)::

    a = ReLU(BN1(conv1x1(x)))
    b = BN2(conv3x3(a)) + inner(a)      # inner = GN(a) for d-RGS / Res-RGS, else 0
    F = BN3(conv1x1(ReLU(b)))           # times SE(F) when SE is on

Block outputs (identity-shape blocks; projection blocks replace the shortcut by
``BN(conv1x1_stride(x))`` and then apply the same post-sum function):

    original  ReLU(F + x)          RBS  F + BN(ReLU(x))
    b-RGS     F + GN(ReLU(x))      GS   F + GN(x)
    d-RGS     F_inner + GN(ReLU(x))
    Res-RGS   F_inner + GN(ReLU(x)) + x
    RGB       GN(ReLU(F + x))      2GN  original with GN after both inner ReLUs

Decision: the inner RG shortcut exists only where the 3x3 conv keeps the shape (stride
1); in a block whose 3x3 conv is strided it is left out.

Parameter names of the shared layers (``conv1..3`` with their ``norm``, ``shortcut``)
are Detectron2's, so ``original`` is interchangeable with ``build_resnet_backbone``.
Added layers: ``shortcut_norm``, ``inner_norm``, ``output_norm``, ``relu_norm1/2``, ``se``.
"""
import fvcore.nn.weight_init as weight_init
import torch.nn.functional as F
from torch import nn

from detectron2.layers import CNNBlockBase, Conv2d, get_norm

from ..config import check_groups_divide
from .shortcuts import ReLUGroupNorm

__all__ = [
    "RGSBottleneckBlock", "PreactBottleneckBlock", "SqueezeExcitation", "make_block_kwargs",
    "add_rgs_layers", "rgs_block_forward",
]

# Per variant: the op on the identity-shape shortcut, whether the 3x3 conv gets the inner
# RG shortcut, whether the block ends with ReLU. Shared with the ImageNet classifier.
SHORTCUT_KIND = {
    "original": None, "2GN": None, "RGB": None,
    "b-RGS": "RG", "d-RGS": "RG", "Res-RGS": "RG",
    "RBS": "RB", "GS": "G",
}
INNER_RG_VARIANTS = {"d-RGS", "Res-RGS"}
POST_RELU_VARIANTS = {"original", "2GN"}


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


class RGSBottleneckBlock(CNNBlockBase):
    """One bottleneck block of any non-preactivation variant (see the module docstring)."""

    def __init__(
        self,
        in_channels,
        out_channels,
        *,
        bottleneck_channels,
        variant="Res-RGS",
        gn_groups=32,
        stride=1,
        num_groups=1,
        norm="BN",
        stride_in_1x1=False,
        dilation=1,
        se_reduction=0,
        shortcut_impl="auto",
    ):
        super().__init__(in_channels, out_channels, stride)
        projection = in_channels != out_channels
        if projection:
            self.shortcut = Conv2d(
                in_channels, out_channels, kernel_size=1, stride=stride, bias=False,
                norm=get_norm(norm, out_channels),
            )
        else:
            self.shortcut = None

        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = Conv2d(
            in_channels, bottleneck_channels, kernel_size=1, stride=stride_1x1, bias=False,
            norm=get_norm(norm, bottleneck_channels),
        )
        self.conv2 = Conv2d(
            bottleneck_channels, bottleneck_channels, kernel_size=3, stride=stride_3x3,
            padding=1 * dilation, bias=False, groups=num_groups, dilation=dilation,
            norm=get_norm(norm, bottleneck_channels),
        )
        self.conv3 = Conv2d(
            bottleneck_channels, out_channels, kernel_size=1, bias=False,
            norm=get_norm(norm, out_channels),
        )
        for layer in [self.conv1, self.conv2, self.conv3, self.shortcut]:
            if layer is not None:
                weight_init.c2_msra_fill(layer)

        add_rgs_layers(
            self, variant, projection=projection, stride_3x3=stride_3x3, out_channels=out_channels,
            bottleneck_channels=bottleneck_channels, gn_groups=gn_groups, se_reduction=se_reduction,
            shortcut_impl=shortcut_impl, shortcut_bn=lambda c: get_norm(norm, c),
            where=f"a block with {in_channels}->{out_channels} channels ({variant})",
        )

    def forward(self, x):
        return rgs_block_forward(self, x, self.conv1, self.conv2, self.conv3, self.shortcut)


def add_rgs_layers(block, variant, *, projection, stride_3x3, out_channels, bottleneck_channels,
                   gn_groups, se_reduction, shortcut_impl, shortcut_bn, where):
    """Give ``block`` the layers its variant adds to a ResNet bottleneck.

    Shared by the Detectron2 block and the torchvision-named ImageNet block, so both hold
    the same layers under the same names and take the same branches in
    :func:`rgs_block_forward`. ``shortcut_bn(channels)`` makes RBS's BatchNorm.
    """

    def gn(channels, what, cls=ReLUGroupNorm):
        check_groups_divide(gn_groups, channels, f"{what} of {where}")
        if cls is ReLUGroupNorm:
            return ReLUGroupNorm(gn_groups, channels, impl=shortcut_impl)
        return cls(gn_groups, channels)

    block.variant = variant
    # The nonlinear shortcut replaces the identity only where shapes match.
    kind = None if projection else SHORTCUT_KIND[variant]
    block.shortcut_kind = kind
    if kind == "RG":
        block.shortcut_norm = gn(out_channels, "the shortcut")
    elif kind == "G":
        block.shortcut_norm = gn(out_channels, "the shortcut", nn.GroupNorm)
    elif kind == "RB":
        block.shortcut_norm = shortcut_bn(out_channels)
    block.has_identity = projection or kind is None or variant == "Res-RGS"
    block.has_inner = variant in INNER_RG_VARIANTS and stride_3x3 == 1
    if block.has_inner:
        block.inner_norm = gn(bottleneck_channels, "the 3x3 conv")
    if variant == "2GN":
        block.relu_norm1 = gn(bottleneck_channels, "the 1x1 conv", nn.GroupNorm)
        block.relu_norm2 = gn(bottleneck_channels, "the 3x3 conv", nn.GroupNorm)
    if variant == "RGB":
        block.output_norm = gn(out_channels, "the output")
    block.post_relu = variant in POST_RELU_VARIANTS
    block.se = SqueezeExcitation(out_channels, se_reduction) if se_reduction else None


def rgs_block_forward(block, x, conv_bn1, conv_bn2, conv_bn3, projection):
    """The equations of the module docstring; ``conv_bnK`` compute BN(convK(.))."""
    a = F.relu_(conv_bn1(x))
    if block.variant == "2GN":
        a = block.relu_norm1(a)
    b = conv_bn2(a)
    if block.has_inner:
        b = b + block.inner_norm(a)  # GN(ReLU(a)) == GN(a): a is already a ReLU output
    b = F.relu_(b)
    if block.variant == "2GN":
        b = block.relu_norm2(b)
    out = conv_bn3(b)
    if block.se is not None:
        out = block.se(out)

    if projection is not None:
        out = out + projection(x)
    elif block.shortcut_kind == "RG":
        out = out + block.shortcut_norm(x, add_identity=block.has_identity)
    elif block.shortcut_kind == "RB":
        out = out + block.shortcut_norm(F.relu(x))
    elif block.shortcut_kind == "G":
        out = out + block.shortcut_norm(x)
    else:
        out = out + x

    if block.post_relu:
        out = F.relu_(out)
    elif block.variant == "RGB":
        out = block.output_norm(out)  # GN(ReLU(F + h(x)))
    return out


class PreactBottleneckBlock(CNNBlockBase):
    """Pre-activation bottleneck (He et al., ECCV 2016), the paper's "Preact" row.

    ``norm_k`` precede ``conv_k``; the identity is added with no post-activation. A
    projection shortcut sees the pre-activated input ``ReLU(norm1(x))``.
    """

    def __init__(
        self,
        in_channels,
        out_channels,
        *,
        bottleneck_channels,
        stride=1,
        num_groups=1,
        norm="BN",
        stride_in_1x1=False,
        dilation=1,
        se_reduction=0,
        **unused,
    ):
        super().__init__(in_channels, out_channels, stride)
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.norm1 = get_norm(norm, in_channels)
        self.conv1 = Conv2d(in_channels, bottleneck_channels, 1, stride=stride_1x1, bias=False)
        self.norm2 = get_norm(norm, bottleneck_channels)
        self.conv2 = Conv2d(
            bottleneck_channels, bottleneck_channels, 3, stride=stride_3x3, padding=dilation,
            bias=False, groups=num_groups, dilation=dilation,
        )
        self.norm3 = get_norm(norm, bottleneck_channels)
        self.conv3 = Conv2d(bottleneck_channels, out_channels, 1, bias=False)
        self.shortcut = (
            Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)
            if in_channels != out_channels
            else None
        )
        for layer in [self.conv1, self.conv2, self.conv3, self.shortcut]:
            if layer is not None:
                weight_init.c2_msra_fill(layer)
        self.se = SqueezeExcitation(out_channels, se_reduction) if se_reduction else None

    def forward(self, x):
        pre = F.relu(self.norm1(x))
        out = self.conv1(pre)
        out = self.conv2(F.relu_(self.norm2(out)))
        out = self.conv3(F.relu_(self.norm3(out)))
        if self.se is not None:
            out = self.se(out)
        identity = self.shortcut(pre) if self.shortcut is not None else x
        return out + identity


def make_block_kwargs(variant, gn_groups, se_reduction, shortcut_impl):
    """The block class and the variant-specific constructor arguments."""
    if variant == "Preact":
        return PreactBottleneckBlock, {"se_reduction": se_reduction}
    return RGSBottleneckBlock, {
        "variant": variant,
        "gn_groups": gn_groups,
        "se_reduction": se_reduction,
        "shortcut_impl": shortcut_impl,
    }
