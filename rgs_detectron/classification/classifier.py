"""Torchvision-style ImageNet RGSNet: the layout that classification checkpoints use.

This module defines the checkpoint format that ``rgs_detectron.checkpoint.convert`` turns
into Detectron2 weights. Names follow torchvision's ``ResNet`` (``conv1``/``bn1`` stem,
``layer1``..``layer4``, blocks with ``conv1..3``/``bn1..3``/``downsample.0/1``, ``fc``), so
for ``variant="original"`` the state dict is exactly torchvision's ``resnet50()``, and
``resnet18()``/``resnet34()`` at depths 18 and 34 (basic blocks). Layers a variant adds carry
the same names as in the Detectron2 blocks (``shortcut_norm``, ``inner_norm``, ``output_norm``,
``relu_norm1/2``, ``se.fc1/fc2``): the blocks here subclass the Detectron2 blocks and
override only the names, so the two cannot compute different things.
Preact adds ``final_norm``, the BN-ReLU before pooling that ends a pre-activation network.

The stride sits in the 3x3 conv (torchvision's "ResNet v1.5", Detectron2's
``STRIDE_IN_1X1: False``) and the norms are trainable BatchNorms; a spec that says
otherwise is refused. ``spec.stem == "small"`` gives the CIFAR-style stem (conv3x3 stride
1, BN, ReLU, no max-pool) for 28-32 pixel images; its ``conv1`` is 3x3, which the
converter recognises and refuses for detection.
"""
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..modeling.backbone import make_rgsnet_stages
from ..modeling.blocks import ConvLayout, PreactBlock, RGSBlock
from ..modeling.spec import RGSNetSpec

__all__ = ["RGSNetClassifier"]


def _conv_then_bn(k):
    """Conv k then its BatchNorm: what one Detectron2 ``Conv2d`` with a norm computes."""
    return lambda self, x: getattr(self, f"bn{k}")(getattr(self, f"conv{k}")(x))


def _bn_relu(k):
    return lambda self, x: F.relu_(getattr(self, f"bn{k}")(x))


def _downsample(self, x):
    return None if self.downsample is None else self.downsample(x)


class ClassifierBlock(RGSBlock):
    """``RGSBlock`` with torchvision's names: ``convK`` then ``bnK``, ``downsample.0/1``."""

    conv_bn1, conv_bn2, conv_bn3 = map(_conv_then_bn, (1, 2, 3))
    project = _downsample

    def _add_units(self, spec, convs, projection):
        for k, conv in enumerate(convs, 1):
            setattr(self, f"conv{k}", conv.make())
            setattr(self, f"bn{k}", nn.BatchNorm2d(conv.out_channels))
        self.downsample = None
        if projection is not None:
            self.downsample = nn.Sequential(projection.make(), nn.BatchNorm2d(projection.out_channels))


class ClassifierPreactBlock(PreactBlock):
    """``PreactBlock`` with torchvision-style names: ``bnK`` before ``convK``, ``downsample.0``."""

    activate2, activate3 = map(_bn_relu, (2, 3))
    project = _downsample

    def _add_units(self, spec, convs, projection, preactivate_input):
        for k, conv in enumerate(convs, 1):
            setattr(self, f"bn{k}", nn.BatchNorm2d(conv.in_channels) if k > 1 or preactivate_input else None)
            setattr(self, f"conv{k}", conv.make())
        self.downsample = None if projection is None else nn.Sequential(projection.make())

    def preactivate(self, x):
        return x if self.bn1 is None else F.relu(self.bn1(x))


class RGSNetClassifier(nn.Module):
    """Image classifier for any RGSNet spec, named like torchvision's ``ResNet``.

    Args:
        spec: the architecture (``RGSNetSpec.create(variant, depth, width_mult, ...)``).
        num_classes: outputs of ``fc``.
    """

    def __init__(self, spec: RGSNetSpec, num_classes=1000):
        super().__init__()
        for field, want in (("norm", "BN"), ("stride_in_1x1", False), ("res5_dilation", 1)):
            if getattr(spec, field) != want:
                raise ConfigError(
                    f"{field} = {getattr(spec, field)!r}: the torchvision-layout classifier has {field} = {want!r}")
        self.spec = spec
        preact = spec.variant.preact
        small = spec.stem == "small"  # conv3x3/1 and no max-pool, else ResNet's conv7x7/2 and max-pool/2
        self.conv1 = ConvLayout(spec.in_channels, spec.stem_channels, 3 if small else 7, 1 if small else 2).make()
        self.maxpool = nn.Identity() if small else nn.MaxPool2d(3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(spec.stem_channels)
        self.relu = nn.ReLU(inplace=True)
        # The stages of the Detectron2 backbone (the same strides and pre-activations), torchvision's names.
        stages = make_rgsnet_stages(spec, block_class=ClassifierPreactBlock if preact else ClassifierBlock)
        for i, blocks in enumerate(stages):
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
        out_channels = spec.stage_widths()[-1][1]
        # Pre-activation blocks end un-normalized; ResNet v2 adds BN-ReLU before pooling.
        self.final_norm = nn.BatchNorm2d(out_channels) if preact else None
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(out_channels, num_classes)
        self._init_weights()

    def _init_weights(self):
        """torchvision's initialization: He-normal convs; norms are left as they initialise themselves
        (weight 1, bias 0; the RG shortcut's weight 0 with ``rg_init="zero"``)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward_features(self, x):
        """Outputs of ``layer1``..``layer4`` (Detectron2's ``res2``..``res5``)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        features = {}
        for name in ("layer1", "layer2", "layer3", "layer4"):
            features[name] = x = getattr(self, name)(x)
        return features

    def forward(self, x):
        x = self.forward_features(x)["layer4"]
        if self.final_norm is not None:
            x = F.relu(self.final_norm(x))
        return self.fc(self.avgpool(x).flatten(1))
