"""C4 ROI head whose res5 stage is built from RGSNet blocks."""
import torch
from torch import nn

from detectron2.modeling import ROI_HEADS_REGISTRY
from detectron2.modeling.roi_heads import Res5ROIHeads

from .backbone import make_rgsnet_stages
from .spec import RGSNetSpec
from .spec_record import CarriesSpec

__all__ = ["RGSNetRes5ROIHeads", "make_rgsnet_res5"]


class RGSNetRes5(CarriesSpec, nn.Sequential):
    """A C4 head's res5 blocks; its state dict records the spec it was built from (``spec_record``)."""


def make_rgsnet_res5(spec=None, **description):
    """res5 of an RGSNet as one ``nn.Sequential``, for ``Res5ROIHeads(res5=...)``.

    Takes a spec or its description (the keywords of ``RGSNetSpec.create``), so a
    LazyConfig C4 model writes ``res5=L(make_rgsnet_res5)(variant="Res-RGS", norm="FrozenBN")``.
    The block count follows the depth (not a fixed 3), so converted ImageNet weights for
    res5 load into the head.
    """
    spec = RGSNetSpec.resolve(spec, description, "make_rgsnet_res5")
    res5 = RGSNetRes5(*make_rgsnet_stages(spec, 5, 5)[0])
    res5.spec = spec
    return res5


@ROI_HEADS_REGISTRY.register()
class RGSNetRes5ROIHeads(Res5ROIHeads):
    """Detectron2's ``Res5ROIHeads`` with res5 made of the configured RGSNet variant.

    ``mask_on`` is a TorchScript constant, so that a head without masks scripts: the mask
    branch is compiled away (Detectron2 0.7.2's ``Res5ROIHeads`` does not script without one).
    """

    mask_on: torch.jit.Final[bool]

    @classmethod
    def _build_res5_block(cls, cfg):
        res5 = make_rgsnet_res5(RGSNetSpec.from_cfg(cfg))
        return res5, res5[-1].out_channels
