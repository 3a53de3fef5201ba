"""Small configs and inputs shared by the tests (tiny widths so the CPU suite stays fast).

Every test detector is a shipped config plus overrides: ``configs/demo/digits_res_rgs.yaml``
(FPN) or ``digits_res_rgs_c4.yaml`` (C4), made smaller still by ``TINY``.
"""
import hashlib
import importlib
import sys
import types
from pathlib import Path

import torch

from detectron2.structures import Boxes, Instances

from rgs_detectron import get_rgsnet_cfg
from rgs_detectron.checkpoint import RGSCheckpointer
from rgs_detectron.model_zoo import get_config_file

ROOT = Path(__file__).resolve().parents[1]

TINY_WIDTH = [
    "MODEL.RESNETS.STEM_OUT_CHANNELS", 16, "MODEL.RESNETS.RES2_OUT_CHANNELS", 64, "MODEL.RESNETS.WIDTH_PER_GROUP", 16
]
TINY = [
    "MODEL.DEVICE",
    "cpu",
    "MODEL.FPN.OUT_CHANNELS",
    32,
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE",
    32,
    "MODEL.RPN.POST_NMS_TOPK_TRAIN",
    64,
    "MODEL.RPN.POST_NMS_TOPK_TEST",
    32,
    "MODEL.ROI_BOX_HEAD.FC_DIM",
    64,
    "INPUT.MIN_SIZE_TEST",
    96,
    "INPUT.MAX_SIZE_TEST",
    96,
    "INPUT.MIN_SIZE_TRAIN",
    (96, ),
    "INPUT.MAX_SIZE_TRAIN",
    96,
    "DATALOADER.NUM_WORKERS",
    0,
]
CONFIGS = {"FPN": "demo/digits_res_rgs.yaml", "C4": "demo/digits_res_rgs_c4.yaml"}


def rgs_cfg(*opts, base=None):
    """A Detectron2 config with MODEL.RGSNET, optionally from a yaml, on the CPU, then ``opts``."""
    return get_rgsnet_cfg(base, ["MODEL.DEVICE", "cpu", *opts])


def tiny_detector_cfg(variant="Res-RGS", head="FPN", *opts):
    """The shipped digits config (0.25x depth-26, trained from scratch) made tinier, ``variant``, ``opts``."""
    return get_rgsnet_cfg(get_config_file(CONFIGS[head]), [*TINY, "MODEL.RGSNET.VARIANT", variant, *opts])


def tiny_batch(n=2, size=96, seed=0, num_classes=10):
    """Detectron2 inputs with a few ground-truth boxes per image."""
    g = torch.Generator().manual_seed(seed)
    batch = []
    for _ in range(n):
        image = torch.randint(0, 256, (3, size, size), generator=g, dtype=torch.uint8)
        xy = torch.randint(0, size // 2, (3, 2), generator=g).float()
        wh = torch.randint(12, size // 2, (3, 2), generator=g).float()
        inst = Instances((size, size))
        inst.gt_boxes = Boxes(torch.cat([xy, xy + wh], dim=1))
        inst.gt_classes = torch.randint(0, num_classes, (3, ), generator=g)
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


def save_random_detector(root, variant="Res-RGS", head="FPN", *opts):
    """A tiny detector's config (``root/tiny.yaml``) and seeded random weights (``root/model.pth``).

    Returns (config path, weights path, cfg with MODEL.WEIGHTS set).
    """
    from detectron2.modeling import build_model

    cfg = tiny_detector_cfg(variant, head, *opts)
    config = root / "tiny.yaml"
    config.write_text(cfg.dump())
    torch.manual_seed(0)
    RGSCheckpointer(build_model(cfg), save_dir=str(root)).save("model")
    cfg.MODEL.WEIGHTS = str(root / "model.pth")
    cfg.freeze()
    return str(config), cfg.MODEL.WEIGHTS, cfg


def tool_module(name):
    """A developer tool of ``tools/`` (scripts, not an installed package), imported by its file name."""
    if str(ROOT / "tools") not in sys.path:
        sys.path.insert(0, str(ROOT / "tools"))
    return importlib.import_module(name)


def doc_section(doc, marker):
    """The text of ``doc`` (a path under the repository) between ``<!-- marker -->`` and ``<!-- /marker -->``."""
    text = (ROOT / doc).read_text()
    return text.split(f"<!-- {marker} -->\n", 1)[1].split(f"\n<!-- /{marker} -->", 1)[0]


def as_torchvision_weights(monkeypatch, data, stem="resnet50"):
    """torchvision's ResNet50_Weights.IMAGENET1K_V1 published as ``data``: its URL's file name carries the sha256
    prefix of ``data``, as torch.hub's convention has it. Returns that file name."""
    from torchvision import models

    name = f"{stem}-{hashlib.sha256(data).hexdigest()[:8]}.pth"
    real = models.get_weight
    entry = types.SimpleNamespace(url=f"https://download.pytorch.org/models/{name}")
    monkeypatch.setattr(models, "get_weight", lambda n: entry if n == "ResNet50_Weights.IMAGENET1K_V1" else real(n))
    return name
