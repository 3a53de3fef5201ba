"""Torchvision-style ImageNet RGSNet: the layout that ImageNet checkpoints use.

This module defines the *classification* checkpoint format that
``rgs_detectron.checkpoint`` converts to Detectron2. Names follow torchvision's
``ResNet`` (``conv1``/``bn1`` stem, ``layer1``..``layer4``, blocks with
``conv1..3``/``bn1..3``/``downsample.0/1``, ``fc``), so for ``variant="original"`` the
state dict is exactly torchvision's ``resnet50()``. Modules that a variant adds carry the
same names as in the Detectron2 blocks (``rgs_detectron.modeling.blocks``), so the
converter keeps them as they are:

    shortcut_norm  RG shortcut GN (b-RGS, d-RGS, Res-RGS), BN (RBS), plain GN (GS)
    inner_norm     inner RG shortcut around the 3x3 conv (d-RGS, Res-RGS; stride-1 only)
    output_norm    RG after the sum (RGB)
    relu_norm1/2   GN after the two inner ReLUs (2GN)
    se.fc1/fc2     squeeze-and-excitation (``se_reduction > 0``)
    final_norm     Preact only: BN before the pooling (no Detectron2 counterpart)

The stride sits in the 3x3 conv (torchvision's "ResNet v1.5"), which is Detectron2's
``MODEL.RESNETS.STRIDE_IN_1X1: False``. Widths, group counts and depth tables are taken
from a Detectron2 config through the same validators the backbone uses, so a classifier
and the backbone built from one description always agree.
"""
import torch.nn.functional as F
from torch import nn

from detectron2.config import get_cfg

from . import config as rgs_config  # module import: its validators share names with arguments here
from .config import BLOCKS_PER_STAGE, add_rgsnet_config, canonical_variant
from .modeling.backbone import rgsnet_stage_kwargs
# The variant-specific layers and forward are shared with the Detectron2 blocks on purpose:
# the two implementations must compute the same thing for every variant.
from .modeling.blocks import SqueezeExcitation, add_rgs_layers, rgs_block_forward

__all__ = ["RGSNetClassifier", "Bottleneck", "PreactBottleneck", "build_classifier", "rgsnet_cfg"]


def _scaled(base, width, arg):
    value = base * width
    if value < 1 or abs(value - round(value)) > 1e-9:
        flag = "--" + arg.replace("_", "-")
        raise ValueError(f"width {width} gives {value:g} for {arg} (from {base}); give {arg} ({flag}) explicitly")
    return int(round(value))


def rgsnet_cfg(
    variant,
    depth=50,
    width=1.0,
    *,
    stem_channels=None,
    res2_out_channels=None,
    num_groups=1,
    width_per_group=None,
    gn_groups=0,
    se_reduction=0,
    blocks_per_stage=None,
):
    """A Detectron2 config describing one RGSNet (the backbone part only).

    ``width`` scales the stem (64), res2 output (256) and bottleneck (``width_per_group``,
    64 unless given) channels, as the paper's 0.25x/0.5x/2x models do; an explicit
    ``stem_channels``/``res2_out_channels``/``width_per_group`` is used as given.
    ``blocks_per_stage`` (4 counts) overrides the depth table.
    """
    cfg = add_rgsnet_config(get_cfg())
    res = cfg.MODEL.RESNETS
    res.DEPTH = int(depth)
    res.STEM_OUT_CHANNELS = stem_channels or _scaled(64, width, "stem_channels")
    res.RES2_OUT_CHANNELS = res2_out_channels or _scaled(256, width, "res2_out_channels")
    res.NUM_GROUPS = int(num_groups)
    res.WIDTH_PER_GROUP = width_per_group or _scaled(64, width, "width_per_group")
    res.STRIDE_IN_1X1 = False
    cfg.MODEL.RGSNET.VARIANT = canonical_variant(variant)
    cfg.MODEL.RGSNET.GN_GROUPS = int(gn_groups)
    cfg.MODEL.RGSNET.SE_REDUCTION = int(se_reduction)
    cfg.MODEL.RGSNET.BLOCKS_PER_STAGE = list(blocks_per_stage or [])
    return cfg


class Bottleneck(nn.Module):
    """Torchvision-named bottleneck for every non-preactivation variant.

    Computes exactly what ``RGSBottleneckBlock`` computes (see its module docstring);
    only the names differ (``bnK`` instead of ``convK.norm``, ``downsample`` instead of
    ``shortcut``).
    """

    def __init__(self, in_channels, bottleneck_channels, out_channels, *, stride=1, variant="Res-RGS",
                 gn_groups=32, num_groups=1, se_reduction=0, shortcut_impl="auto"):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, bottleneck_channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(bottleneck_channels)
        self.conv2 = nn.Conv2d(bottleneck_channels, bottleneck_channels, 3, stride=stride, padding=1,
                               groups=num_groups, bias=False)
        self.bn2 = nn.BatchNorm2d(bottleneck_channels)
        self.conv3 = nn.Conv2d(bottleneck_channels, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        projection = in_channels != out_channels
        self.downsample = (
            nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                          nn.BatchNorm2d(out_channels))
            if projection else None
        )

        add_rgs_layers(
            self, variant, projection=projection, stride_3x3=stride, out_channels=out_channels,
            bottleneck_channels=bottleneck_channels, gn_groups=gn_groups, se_reduction=se_reduction,
            shortcut_impl=shortcut_impl, shortcut_bn=nn.BatchNorm2d,
            where=f"a block with {in_channels}->{out_channels} channels ({variant})",
        )

    def forward(self, x):
        return rgs_block_forward(
            self, x, lambda t: self.bn1(self.conv1(t)), lambda t: self.bn2(self.conv2(t)),
            lambda t: self.bn3(self.conv3(t)), self.downsample,
        )


class PreactBottleneck(nn.Module):
    """Torchvision-named pre-activation bottleneck, as ``PreactBottleneckBlock``.

    ``bnK`` precede ``convK``; a projection (``downsample.0``, a bare conv) sees
    ``ReLU(bn1(x))``.
    """

    def __init__(self, in_channels, bottleneck_channels, out_channels, *, stride=1, num_groups=1,
                 se_reduction=0, **unused):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, bottleneck_channels, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(bottleneck_channels)
        self.conv2 = nn.Conv2d(bottleneck_channels, bottleneck_channels, 3, stride=stride, padding=1,
                               groups=num_groups, bias=False)
        self.bn3 = nn.BatchNorm2d(bottleneck_channels)
        self.conv3 = nn.Conv2d(bottleneck_channels, out_channels, 1, bias=False)
        self.downsample = (
            nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False))
            if in_channels != out_channels else None
        )
        self.se = SqueezeExcitation(out_channels, se_reduction) if se_reduction else None

    def forward(self, x):
        pre = F.relu(self.bn1(x))
        out = self.conv1(pre)
        out = self.conv2(F.relu(self.bn2(out)))
        out = self.conv3(F.relu(self.bn3(out)))
        if self.se is not None:
            out = self.se(out)
        identity = self.downsample(pre) if self.downsample is not None else x
        return out + identity


class RGSNetClassifier(nn.Module):
    """ImageNet classifier for any variant and depth, named like torchvision's ``ResNet``.

    Build it with :func:`build_classifier` (or :meth:`from_cfg` with a Detectron2 config),
    which validates the description exactly as the Detectron2 backbone does.
    """

    def __init__(self, variant, blocks_per_stage, stage_widths, *, stem_channels=64, gn_groups=32,
                 num_groups=1, se_reduction=0, num_classes=1000, shortcut_impl="auto"):
        super().__init__()
        self.variant = canonical_variant(variant)
        preact = self.variant == "Preact"
        block = PreactBottleneck if preact else Bottleneck
        self.conv1 = nn.Conv2d(3, stem_channels, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_channels)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        in_channels = stem_channels
        for i, (n, (bottleneck, out)) in enumerate(zip(blocks_per_stage, stage_widths)):
            blocks = [
                block(in_channels if j == 0 else out, bottleneck, out, stride=2 if (i > 0 and j == 0) else 1,
                      variant=self.variant, gn_groups=gn_groups, num_groups=num_groups,
                      se_reduction=se_reduction, shortcut_impl=shortcut_impl)
                for j in range(n)
            ]
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            in_channels = out
        # Pre-activation blocks end un-normalized; ResNet v2 adds BN-ReLU before pooling.
        self.final_norm = nn.BatchNorm2d(in_channels) if preact else None
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(in_channels, num_classes)
        self._init_weights()

    def _init_weights(self):
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @classmethod
    def from_cfg(cls, cfg, num_classes=1000):
        """Build from a Detectron2 config (``MODEL.RESNETS`` + ``MODEL.RGSNET``)."""
        _, num_blocks, widths = rgsnet_stage_kwargs(cfg)  # validates like the backbone
        res = cfg.MODEL.RESNETS
        return cls(
            cfg.MODEL.RGSNET.VARIANT, num_blocks, widths,
            stem_channels=res.STEM_OUT_CHANNELS, gn_groups=rgs_config.gn_groups(cfg), num_groups=res.NUM_GROUPS,
            se_reduction=rgs_config.se_reduction(cfg), num_classes=num_classes,
            shortcut_impl=rgs_config.shortcut_impl(cfg),
        )

    def forward_features(self, x):
        """Outputs of ``layer1``..``layer4`` (Detectron2's ``res2``..``res5``)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        features = {}
        for name in ("layer1", "layer2", "layer3", "layer4"):
            x = getattr(self, name)(x)
            features[name] = x
        return features

    def forward(self, x):
        x = self.forward_features(x)["layer4"]
        if self.final_norm is not None:
            x = F.relu(self.final_norm(x))
        return self.fc(self.avgpool(x).flatten(1))


def build_classifier(
    variant,
    depth=50,
    width=1.0,
    *,
    num_classes=1000,
    se_reduction=0,
    gn_groups=0,
    num_groups=1,
    width_per_group=None,
    blocks_per_stage=None,
    stem_channels=None,
    res2_out_channels=None,
):
    """An :class:`RGSNetClassifier` from the same description the converter takes.

    ``depth`` is one of ``config.BLOCKS_PER_STAGE`` unless ``blocks_per_stage`` is given;
    ``gn_groups=0`` means the paper's rule (32 at width 1x, scaled with width).
    """
    if blocks_per_stage is None and depth not in BLOCKS_PER_STAGE:
        raise ValueError(f"depth {depth} is not one of {sorted(BLOCKS_PER_STAGE)}; pass blocks_per_stage")
    cfg = rgsnet_cfg(
        variant, depth, width, stem_channels=stem_channels, res2_out_channels=res2_out_channels,
        num_groups=num_groups, width_per_group=width_per_group, gn_groups=gn_groups,
        se_reduction=se_reduction, blocks_per_stage=blocks_per_stage,
    )
    return RGSNetClassifier.from_cfg(cfg, num_classes=num_classes)
