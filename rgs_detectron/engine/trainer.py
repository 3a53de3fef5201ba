"""The trainer behind ``train_net``: Detectron2's ``DefaultTrainer`` with this project's guarantees.

* Evaluators chosen by each test dataset's ``evaluator_type`` (COCO, VOC, panoptic, LVIS, ...).
* DDP that also works for CPU models (Detectron2 passes ``device_ids=[rank]``
  unconditionally, which gloo on the CPU rejects).
* ``RGSCheckpointer``: atomic checkpoints, strict backbone loads, safe reads; temporary
  files a killed save left behind are removed when training starts.
* Data read by ``RGSDatasetMapper`` (16-bit PNGs, named unreadable files) and training
  boxes checked once (``DATASETS.INVALID_BOXES``).
* ``model_final.pth`` exists after every finished run, also one resumed after a kill that
  hit its last save; a diverged run fails with the key to change (a resume past
  ``SOLVER.MAX_ITER`` is refused before, by the preflight).
"""
import logging
import os
import weakref

from detectron2 import evaluation as d2_evaluation
from detectron2.data import MetadataCatalog, build_detection_test_loader, build_detection_train_loader
from detectron2.data.build import get_detection_dataset_dicts
from detectron2.engine import AMPTrainer, DefaultTrainer, SimpleTrainer, TrainerBase
from detectron2.engine.defaults import create_ddp_model as d2_create_ddp_model
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from ..checkpoint.checkpointer import RGSCheckpointer
from ..data.boxes import checked_train_dicts
from ..data.checks import dataset_files
from ..data.mapper import RGSDatasetMapper
from ..errors import ConfigError, InputError, first_line
from .evaluation import build_coco_evaluator
from .guarded_run import run_guarded

__all__ = ["RGSTrainer", "build_evaluator", "check_evaluator_type", "create_ddp_model", "load_train_dicts"]


def create_ddp_model(model, *, fp16_compression=False, **kwargs):
    """Detectron2's ``create_ddp_model`` for CPU models too: it passes ``device_ids=[rank]``, which DDP
    refuses for them, and its fp16 gradient compression (LazyConfig's ``train.ddp``) is CUDA-only here."""
    cuda = next(model.parameters()).is_cuda
    if not cuda:
        kwargs.setdefault("device_ids", None)
    return d2_create_ddp_model(model, fp16_compression=fp16_compression and cuda, **kwargs)


EVALUATOR_TYPES = ("coco", "pascal_voc", "sem_seg", "coco_panoptic_seg", "lvis", "cityscapes_instance",
                   "cityscapes_sem_seg")


def check_evaluator_type(dataset_name):
    """The ``evaluator_type`` of ``dataset_name``, or a ConfigError when no evaluator here takes it."""
    kind = MetadataCatalog.get(dataset_name).get("evaluator_type", None)
    if kind not in EVALUATOR_TYPES:
        raise ConfigError(f"dataset '{dataset_name}' has evaluator_type {kind!r}, which no evaluator here takes "
                          f"(known: {', '.join(EVALUATOR_TYPES)}): set it in the dataset's metadata, or leave the "
                          "dataset out of DATASETS.TEST")
    return kind


def build_evaluator(cfg, dataset_name, output_folder=None):
    """The evaluator(s) for ``dataset_name``, from its ``evaluator_type`` metadata, as Detectron2's
    own ``tools/train_net.py`` picks them; COCO boxes and masks go through ``RGSCOCOEvaluator``."""
    output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference")
    kind = check_evaluator_type(dataset_name)
    evaluators = []
    if kind in ("sem_seg", "coco_panoptic_seg"):
        evaluators.append(d2_evaluation.SemSegEvaluator(dataset_name, distributed=True, output_dir=output_folder))
    if kind in ("coco", "coco_panoptic_seg"):
        evaluators.append(build_coco_evaluator(cfg, dataset_name, output_folder))
    if kind == "coco_panoptic_seg":
        evaluators.append(d2_evaluation.COCOPanopticEvaluator(dataset_name, output_folder))
    if kind == "pascal_voc":
        evaluators.append(d2_evaluation.PascalVOCDetectionEvaluator(dataset_name))
    if kind == "lvis":
        evaluators.append(d2_evaluation.LVISEvaluator(dataset_name, output_dir=output_folder))
    if kind == "cityscapes_instance":
        evaluators.append(d2_evaluation.CityscapesInstanceEvaluator(dataset_name))
    if kind == "cityscapes_sem_seg":
        evaluators.append(d2_evaluation.CityscapesSemSegEvaluator(dataset_name))
    return evaluators[0] if len(evaluators) == 1 else d2_evaluation.DatasetEvaluators(evaluators)


def load_train_dicts(cfg):
    """Training records of ``DATASETS.TRAIN``: loaded (errors name the files), boxes checked."""
    names = list(cfg.DATASETS.TRAIN)
    try:
        dicts = get_detection_dataset_dicts(
            names, filter_empty=False,
            min_keypoints=cfg.MODEL.ROI_KEYPOINT_HEAD.MIN_KEYPOINTS_PER_IMAGE if cfg.MODEL.KEYPOINT_ON else 0,
            proposal_files=cfg.DATASETS.PROPOSAL_FILES_TRAIN if cfg.MODEL.LOAD_PROPOSALS else None)
    except Exception as e:
        files = "; ".join(", ".join(dataset_files(n)) for n in names)
        raise InputError(f"cannot load training data {names} ({files}): {type(e).__name__}: {first_line(e)}") from None
    return checked_train_dicts(dicts, f"DATASETS.TRAIN {names}", cfg.DATASETS.INVALID_BOXES,
                               cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS)


class RGSTrainer(DefaultTrainer):
    """``DefaultTrainer`` for RGSNet detectors (see the module docstring)."""

    def __init__(self, cfg):
        # Detectron2 0.7.2's DefaultTrainer.__init__ (a59f0563), changed: create_ddp_model above, RGSCheckpointer.
        TrainerBase.__init__(self)
        if not logging.getLogger("detectron2").isEnabledFor(logging.INFO):
            setup_logger()
        cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        model = create_ddp_model(model, broadcast_buffers=False)
        trainer_cls = AMPTrainer if cfg.SOLVER.AMP.ENABLED else SimpleTrainer
        self._trainer = trainer_cls(model, data_loader, optimizer)
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = RGSCheckpointer(model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self))
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.register_hooks(self.build_hooks())

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        return build_evaluator(cfg, dataset_name, output_folder)

    @classmethod
    def build_train_loader(cls, cfg):
        return build_detection_train_loader(cfg, mapper=RGSDatasetMapper(cfg, True), dataset=load_train_dicts(cfg))

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        return build_detection_test_loader(cfg, dataset_name, mapper=RGSDatasetMapper(cfg, False))

    def train(self):
        s = self.cfg.SOLVER
        fix = (f"Lower SOLVER.BASE_LR (now {s.BASE_LR}), lengthen SOLVER.WARMUP_ITERS (now {s.WARMUP_ITERS}) or "
               "enable SOLVER.CLIP_GRADIENTS.ENABLED; from scratch, use MODEL.RESNETS.NORM BN or GN with "
               "MODEL.BACKBONE.FREEZE_AT 0.")
        return run_guarded(lambda: (super(RGSTrainer, self).train(), self.iter), self.checkpointer, self.cfg.OUTPUT_DIR,
                           self.max_iter, fix)
