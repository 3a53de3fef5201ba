"""Small configs and inputs shared by the tests (tiny widths so the CPU suite stays fast)."""
import torch

from detectron2.config import get_cfg
from detectron2.structures import Boxes, Instances

from rgs_detectron import add_rgsnet_config

TINY_WIDTH = ["MODEL.RESNETS.STEM_OUT_CHANNELS", 16, "MODEL.RESNETS.RES2_OUT_CHANNELS", 64,
              "MODEL.RESNETS.WIDTH_PER_GROUP", 16]


def rgs_cfg(*opts, base=None):
    """A Detectron2 config with MODEL.RGSNET, optionally from a yaml, then ``opts``."""
    cfg = get_cfg()
    add_rgsnet_config(cfg)
    if base:
        cfg.merge_from_file(base)
    cfg.MODEL.DEVICE = "cpu"
    cfg.merge_from_list(list(opts))
    return cfg


def tiny_detector_cfg(variant, head="FPN", *opts):
    """A 0.25x-width depth-26 Faster R-CNN, trained from scratch (BN, nothing frozen)."""
    base = "configs/Base-RGSNet-FPN.yaml" if head == "FPN" else "configs/Base-RGSNet-C4.yaml"
    return rgs_cfg(
        "MODEL.RGSNET.VARIANT", variant, "MODEL.RESNETS.DEPTH", 26, *TINY_WIDTH,
        "MODEL.RESNETS.NORM", "BN", "MODEL.BACKBONE.FREEZE_AT", 0, "MODEL.FPN.OUT_CHANNELS", 32,
        "MODEL.ROI_HEADS.NUM_CLASSES", 3, "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 32,
        "MODEL.RPN.POST_NMS_TOPK_TRAIN", 64, "MODEL.RPN.POST_NMS_TOPK_TEST", 32,
        "MODEL.ROI_BOX_HEAD.FC_DIM", 64, "INPUT.MIN_SIZE_TEST", 96, "INPUT.MAX_SIZE_TEST", 96,
        *opts, base=base,
    )


def tiny_batch(n=2, size=96, seed=0):
    """Detectron2 inputs with a few ground-truth boxes per image."""
    g = torch.Generator().manual_seed(seed)
    batch = []
    for _ in range(n):
        image = torch.randint(0, 256, (3, size, size), generator=g, dtype=torch.uint8)
        xy = torch.randint(0, size // 2, (3, 2), generator=g).float()
        wh = torch.randint(12, size // 2, (3, 2), generator=g).float()
        inst = Instances((size, size))
        inst.gt_boxes = Boxes(torch.cat([xy, xy + wh], dim=1))
        inst.gt_classes = torch.randint(0, 3, (3,), generator=g)
        batch.append({"image": image, "instances": inst, "height": size, "width": size})
    return batch


def randomize_frozen_bn(module, seed=0):
    """Give every (Frozen)BN non-trivial statistics so equality tests mean something."""
    g = torch.Generator().manual_seed(seed)
    for name, buf in module.named_buffers():
        if name.endswith(("running_mean", "bias")):
            buf.copy_(torch.randn(buf.shape, generator=g) * 0.1)
        elif name.endswith(("running_var", "weight")):
            buf.copy_(torch.rand(buf.shape, generator=g) + 0.5)


def save_random_detector(root, yaml_text):
    """Write ``yaml_text`` to ``root/tiny.yaml`` and save a seeded random-weight model built
    from it with Detectron2's checkpointer. Returns (config path, weights path, frozen cfg)."""
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.modeling import build_model

    config = root / "tiny.yaml"
    config.write_text(yaml_text)
    cfg = rgs_cfg(base=str(config))
    torch.manual_seed(0)
    DetectionCheckpointer(build_model(cfg), save_dir=str(root)).save("model")
    cfg.MODEL.WEIGHTS = str(root / "model.pth")
    cfg.freeze()
    return str(config), cfg.MODEL.WEIGHTS, cfg
