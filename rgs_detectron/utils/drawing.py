"""Drawing detections on an image, at a bounded size.

Detectron2's ``Visualizer`` draws at the image's own resolution: an 8000x8000 photo
took 8.6 GB. Here large images are scaled down first (longest side ``max_side``),
with the predictions scaled to match; the detections themselves are untouched.
"""
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from detectron2.structures import Boxes, Instances

from ..errors import require

__all__ = ["draw_detections"]

MAX_DRAW_SIDE = 1600


def _scaled(instances, scale, size):
    out = Instances(size)
    for name, value in instances.get_fields().items():
        if name == "pred_boxes":
            value = Boxes(value.tensor * scale)
        elif name == "pred_masks" and len(value):
            value = F.interpolate(value[:, None].float(), size=size, mode="nearest")[:, 0] > 0.5
        elif name == "pred_keypoints":
            value = torch.cat([value[..., :2] * scale, value[..., 2:]], dim=-1)
        out.set(name, value)
    return out


def draw_detections(image_bgr, instances, metadata, max_side=MAX_DRAW_SIDE):
    """An RGB uint8 picture of ``instances`` (on the CPU) drawn over ``image_bgr``."""
    rgb = np.ascontiguousarray(image_bgr[:, :, ::-1])
    h, w = rgb.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale < 1.0:
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        rgb = np.asarray(Image.fromarray(rgb).resize((size[1], size[0]), Image.BILINEAR))
        instances = _scaled(instances, scale, size)
    require("cv2", "drawing detections (Detectron2's Visualizer)")
    from detectron2.utils.visualizer import Visualizer

    return Visualizer(rgb, metadata).draw_instance_predictions(instances).get_image()
