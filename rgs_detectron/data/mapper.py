"""Detectron2's ``DatasetMapper`` with this project's image reading.

Detectron2 leaves image loading to the user ("write your own image loading"); this
mapper reads with :func:`rgs_detectron.data.images.read_image` (16-bit PNGs scaled, not
clipped; an unreadable file named in the error) and otherwise does what
``DatasetMapper`` does: the same augmentations, annotation transforms and outputs.
"""
import copy

import numpy as np
import torch

from detectron2.data import DatasetMapper
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T

from ..errors import InputError
from .images import read_image, read_label_map

__all__ = ["RGSDatasetMapper"]


class RGSDatasetMapper(DatasetMapper):

    def __call__(self, dataset_dict):
        # Detectron2 0.7.2's DatasetMapper.__call__ (a59f0563), changed: read_image, read_label_map, files named.
        record = copy.deepcopy(dataset_dict)
        image = read_image(record["file_name"], format=self.image_format)
        try:
            utils.check_image_size(record, image)
        except Exception as e:  # Detectron2's SizeMismatchError names no file
            raise InputError(f"{record['file_name']}: {e}") from None
        sem_seg = None
        if "sem_seg_file_name" in record:
            sem_seg = read_label_map(record.pop("sem_seg_file_name"))

        aug_input = T.AugInput(image, sem_seg=sem_seg)
        transforms = self.augmentations(aug_input)
        image, sem_seg = aug_input.image, aug_input.sem_seg
        image_shape = image.shape[:2]
        record["image"] = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        if sem_seg is not None:
            record["sem_seg"] = torch.as_tensor(sem_seg.astype("long"))
        if self.proposal_topk is not None:
            utils.transform_proposals(record, image_shape, transforms, proposal_topk=self.proposal_topk)
        if not self.is_train:
            record.pop("annotations", None)
            return record
        if "annotations" in record:
            self._transform_annotations(record, transforms, image_shape)
        return record
