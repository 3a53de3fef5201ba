"""The trainer behind tools/train_net.py.

Detectron2's ``DefaultTrainer`` with: evaluators chosen by each test dataset's
``evaluator_type`` (COCO, VOC), DDP that also works for CPU models (Detectron2 passes
``device_ids=[rank]`` unconditionally, which gloo/CPU rejects), atomic checkpoints and
strict weight loading (``RGSCheckpointer``), and dataset/weights checks before anything
is built.
"""
import logging
import os
import weakref

from torch.nn.parallel import DistributedDataParallel

from detectron2.data import MetadataCatalog
from detectron2.engine import AMPTrainer, DefaultTrainer, SimpleTrainer, TrainerBase
from detectron2.evaluation import DatasetEvaluators, PascalVOCDetectionEvaluator
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from .checkpointer import RGSCheckpointer
from .data import check_dataset_files

__all__ = ["RGSTrainer", "build_evaluator", "create_ddp_model", "check_inputs", "check_weights_file"]


def create_ddp_model(model, **kwargs):
    """Wrap in DDP when there is more than one process; CPU models get no ``device_ids``."""
    if comm.get_world_size() == 1:
        return model
    if next(model.parameters()).is_cuda:
        kwargs.setdefault("device_ids", [comm.get_local_rank()])
    return DistributedDataParallel(model, **kwargs)


def build_evaluator(cfg, dataset_name, output_folder=None):
    """COCO or VOC evaluator for ``dataset_name``, from its ``evaluator_type`` metadata."""
    output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference")
    evaluator_type = MetadataCatalog.get(dataset_name).get("evaluator_type", None)
    if evaluator_type == "coco":
        from .evaluation import build_coco_evaluator

        return build_coco_evaluator(cfg, dataset_name, output_folder)
    if evaluator_type == "pascal_voc":
        return PascalVOCDetectionEvaluator(dataset_name)
    raise NotImplementedError(
        f"no evaluator for dataset '{dataset_name}' (evaluator_type={evaluator_type!r}); "
        "RGSNet's trainer evaluates COCO-format ('coco') and VOC-format ('pascal_voc') datasets"
    )


def check_weights_file(cfg):
    """Fail early if ``MODEL.WEIGHTS`` names a local file that does not exist."""
    path = cfg.MODEL.WEIGHTS
    if path and "://" not in path and not os.path.isfile(path):
        raise FileNotFoundError(
            f"cfg.MODEL.WEIGHTS = '{path}' does not exist. Produce it from an ImageNet checkpoint with\n"
            f"  python tools/convert_rgsnet_to_d2.py CLASSIFIER.pth {path} --variant {cfg.MODEL.RGSNET.VARIANT} "
            f"--depth {cfg.MODEL.RESNETS.DEPTH}\n"
            "(see the README, 'Converting weights'), or train from scratch with MODEL.WEIGHTS '' "
            "MODEL.RESNETS.NORM BN MODEL.BACKBONE.FREEZE_AT 0."
        )


class RGSTrainer(DefaultTrainer):
    """``DefaultTrainer`` for RGSNet detectors (see the module docstring)."""

    def __init__(self, cfg):
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


def check_inputs(cfg, eval_only=False, check_weights=True):
    """Every dataset and weights file the run needs exists, or a message says how to get it."""
    names = list(cfg.DATASETS.TEST) + ([] if eval_only else list(cfg.DATASETS.TRAIN))
    check_dataset_files(names)
    if check_weights:
        check_weights_file(cfg)
