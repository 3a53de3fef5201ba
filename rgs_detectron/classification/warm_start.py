"""Warm start: an RGS variant initialised from a plain (torchvision-layout) ResNet's weights.

NOT the paper's protocol: the paper trains every variant on ImageNet itself (Table 2). A
warm start copies the ResNet's tensors into the layers that the variant shares with ResNet
(stem, every conv and BN of the residual branches, the projection shortcuts, and ``fc`` when
the class count matches) and leaves the layers the variant adds at their stated initial values,
those of training from scratch:

* GroupNorms (``shortcut_norm`` of b-/d-/Res-RGS and GS, ``inner_norm``, ``output_norm``,
  ``relu_norm1/2``): weight 1, bias 0, as when training from scratch (with ``rg_init="zero"``
  the RG shortcut's weight 0, as from scratch too); the report states the values they hold;
* RBS's BatchNorm ``shortcut_norm``: weight 1, bias 0, running mean 0, running var 1;
* squeeze-and-excitation ``se.fc1/fc2``: He-normal weights and zero biases, as every conv of
  the classifier (seeded).

The result computes a different function from the ResNet (the identity shortcut became
``GN(ReLU(x))``, the sum lost its ReLU), so it is a starting point for further training that
is far cheaper than pretraining: on ImageNet with ``train_classifier --warm-start``, or in
detection after conversion. The copied BatchNorm statistics describe the ResNet's activations,
not the variant's, and no setting of the added layers makes them fit (the post-sum ReLU is
gone): training must let BatchNorm learn them (the classifier does; a detector needs trainable
BatchNorm, not FrozenBN, with which a warm-started Res-RGS-50 diverges: docs/RESULTS.md, "The warm start,
measured"). Results from it must be labelled as such.
"""
from collections import OrderedDict

from torch import nn

from ..errors import ConfigError, InputError
from ..modeling.variants import all_added_layers
from ..utils.names import short_list

__all__ = ["warm_start_from_resnet", "LABEL"]

LABEL = "warm start from ResNet weights (not the paper's protocol)"
FROZEN_BN_NOTE = (
    "the BatchNorm statistics are the ResNet's, not this variant's: train with BatchNorm that learns them "
    "(train_classifier does; a detector needs MODEL.RESNETS.NORM SyncBN or BN with MODEL.BACKBONE."
    "FREEZE_AT 0, not FrozenBN, with which a warm-started Res-RGS-50 diverged: see docs/RESULTS.md)")


def _how(module):
    """What a layer the warm start did not copy starts at: a norm's values as it holds them (rg_init "zero" starts
    the RG shortcut's weight at 0), how the others were drawn."""
    if isinstance(module, (nn.GroupNorm, nn.BatchNorm2d)):
        values = ", ".join(f"{n.replace('_', ' ')} {t.flatten()[0].item():g}" for n, t in module.state_dict().items()
                           if n != "num_batches_tracked")  # each a constant at initialisation
        return f"{'GroupNorm' if isinstance(module, nn.GroupNorm) else 'BatchNorm'}, {values}"
    if isinstance(module, nn.Linear):
        return "classifier, PyTorch's default initialisation (class count differs from the ResNet's)"
    return "squeeze-and-excitation, He-normal convs with zero biases"


def warm_start_from_resnet(model, resnet_state, source="the warm start"):
    """Copy ``resnet_state`` (a torchvision-layout ResNet state dict) into ``model``.

    ``model`` is an ``RGSNetClassifier`` of the same depth and widths. Every tensor of the
    ResNet must find its place (``fc`` may differ in class count); every tensor of
    ``model`` must come from the ResNet unless its variant adds it. An RGSNet checkpoint
    (layers a variant adds, or Preact's ``final_norm``) is refused: it is no ResNet, and
    copying it would label an RGSNet's own training as a warm start. ``source`` names the
    weights in messages. Returns the report's lines: what was copied, how the variant's own
    layers start, what of the ResNet was not used.
    """
    if model.spec.variant.preact:
        raise ConfigError("a warm start from ResNet weights needs ResNet's residual branches; Preact has others")
    foreign = set(all_added_layers()) | {"final_norm"}
    rgs_layers = sorted({part for name in resnet_state for part in name.split(".") if part in foreign})
    if rgs_layers:
        raise InputError(f"{source} is an RGSNet checkpoint (it has {', '.join(rgs_layers)} layers), not a plain "
                         "ResNet: convert it directly, without a warm start, or warm-start from a plain ResNet "
                         "(e.g. torchvision:ResNet50_Weights.IMAGENET1K_V1)")
    target = model.state_dict()
    added = set(model.spec.variant.added_layers()) | {"se"}
    own = OrderedDict((n, m) for n, m in model.named_modules() if n.rsplit(".", 1)[-1] in added)  # the variant's layers
    update, unknown, not_used = OrderedDict(), [], []
    for name, value in resnet_state.items():
        if name.endswith("num_batches_tracked"):
            continue
        if name not in target:
            unknown.append(name)
        elif tuple(value.shape) == tuple(target[name].shape):
            update[name] = value
        elif name.startswith("fc."):
            not_used.append(f"not used from the ResNet: {name} {tuple(value.shape)} (the model has "
                            f"{tuple(target[name].shape)})")
        else:
            unknown.append(f"{name} {tuple(value.shape)} vs {tuple(target[name].shape)}")
    missing = [
        n for n in target if n not in update and not n.endswith("num_batches_tracked") and not n.startswith(
            ("fc.", *(f"{name}." for name in own)))
    ]
    if unknown or missing:
        raise InputError("the ResNet weights do not fit this RGSNet's shared layers (check depth and width): " +
                         (f"unknown or mis-shaped: {short_list(unknown, 8)}; " if unknown else "") +
                         (f"missing: {short_list(missing, 8)}" if missing else ""))
    model.load_state_dict(update, strict=False)  # the rest is what the variant adds (and fc, if dropped)
    groups = OrderedDict()
    for name, module in [*own.items()] + ([("fc", model.fc)] if "fc.weight" not in update else []):
        groups.setdefault(_how(module), []).append(name)
    initialised = "; ".join(
        f"{how} ({len(names)} modules: {short_list(sorted(names), 3)})" for how, names in groups.items())
    return [
        f"WARM START, {LABEL}: copied {len(update)} tensors from the ResNet; the variant's own layers start at: "
        f"{initialised or 'nothing new'}", FROZEN_BN_NOTE
    ] + not_used
