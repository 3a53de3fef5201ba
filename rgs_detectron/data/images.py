"""Reading image files for training, evaluation and the demo.

Detectron2's ``read_image`` converts every PIL image with ``Image.convert("RGB")``, which
clips 16-bit grayscale PNGs (mode ``I;16``) to 255: a dark medical or depth image comes
out white. Here 16-bit data are scaled to 8 bits (``value / 257``, so 65535 -> 255), as
PIL already does for 16-bit colour PNGs; modes that hold no such range (float images)
are refused with the file name. A file that cannot be decoded is named in the error.
"""
import numpy as np
from PIL import Image, ImageOps

from detectron2.data.detection_utils import convert_PIL_to_numpy

from ..errors import InputError, first_line

__all__ = ["open_image", "read_image", "read_label_map"]

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def read_image(path, format="BGR"):
    """An HxWxC uint8 array of ``path`` in ``format`` ("BGR", "RGB" or "L"), EXIF-rotated."""
    return open_image(path, lambda image: convert_PIL_to_numpy(image, format))


def open_image(path, convert):
    """``convert(image)`` of the PIL image of ``path``, EXIF-rotated, 16-bit data in 8 bits; an InputError naming
    the file when it cannot be read or converted. ``convert`` is the one step callers differ in (a numpy array in
    a channel order for the detectors, an RGB PIL image for the classifier's transforms)."""
    try:
        with Image.open(path) as image:
            image.load()
            image = ImageOps.exif_transpose(image)
            if image.mode in _SIXTEEN_BIT_MODES:
                image = _to_8bit(image, path)
            elif image.mode == "F":
                raise InputError(f"{path}: a floating-point image (PIL mode F); save it as 8- or 16-bit")
            return convert(image)
    except InputError:
        raise
    except Exception as e:  # missing, truncated, not an image, ...
        raise InputError(f"cannot read image {path}: {first_line(e)}") from None


def _to_8bit(image, path):
    values = np.asarray(image).astype(np.int64)
    if values.size and (values.min() < 0 or values.max() > 65535):
        raise InputError(f"{path}: a 32-bit integer image with values outside 0..65535; save it as 8- or 16-bit")
    return Image.fromarray(((values + 128) // 257).astype(np.uint8), mode="L")


def read_label_map(path):
    """A semantic-segmentation label map as an HxW integer array, values as stored (never rescaled:
    16-bit class ids stay class ids)."""
    try:
        with Image.open(path) as image:
            return np.asarray(image)
    except Exception as e:
        raise InputError(f"cannot read label map {path}: {first_line(e)}") from None
