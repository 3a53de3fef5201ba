"""Checks a training or evaluation run passes before anything is built.

Each catches a mistake that Detectron2 reports late (after hours of training, for a
corrupt test set) or cryptically (``ZeroDivisionError`` for ``CHECKPOINT_PERIOD 0``,
``KeyError: 'p2'`` for a C4 backbone in an FPN config, ``IndexError`` for too few
classes), and says which key or file to change.
"""
import torch

from detectron2.data import MetadataCatalog
from detectron2.modeling import build_backbone

from ..config import check_cuda
from ..data.boxes import INVALID_BOX_POLICIES
from ..data.checks import check_dataset_files
from ..errors import ConfigError
from .checkpointer import check_weights_file

__all__ = ["preflight", "lazy_preflight"]


def _check_solver(cfg, eval_only):
    if eval_only:
        return
    s = cfg.SOLVER
    for key, value in (("SOLVER.MAX_ITER", s.MAX_ITER), ("SOLVER.CHECKPOINT_PERIOD", s.CHECKPOINT_PERIOD),
                       ("SOLVER.IMS_PER_BATCH", s.IMS_PER_BATCH)):
        if value < 1:
            raise ConfigError(f"{key} = {value} is invalid: give a positive number")
    if cfg.TEST.EVAL_PERIOD < 0:
        raise ConfigError(f"TEST.EVAL_PERIOD = {cfg.TEST.EVAL_PERIOD} is invalid: give 0 (only at the end) or more")
    if s.BASE_LR <= 0:
        raise ConfigError(f"SOLVER.BASE_LR = {s.BASE_LR} is invalid: give a positive learning rate")
    if cfg.DATASETS.get("INVALID_BOXES", "drop") not in INVALID_BOX_POLICIES:
        raise ConfigError(f"DATASETS.INVALID_BOXES = {cfg.DATASETS.INVALID_BOXES!r} is invalid: "
                          f"choose one of {', '.join(INVALID_BOX_POLICIES)}")


def _num_classes(cfg):
    if "RetinaNet" in cfg.MODEL.META_ARCHITECTURE:
        return "MODEL.RETINANET.NUM_CLASSES", cfg.MODEL.RETINANET.NUM_CLASSES
    return "MODEL.ROI_HEADS.NUM_CLASSES", cfg.MODEL.ROI_HEADS.NUM_CLASSES


def _check_classes(cfg, names):
    key, num = _num_classes(cfg)
    for name in names:
        classes = MetadataCatalog.get(name).get("thing_classes", None)
        if classes is not None and len(classes) > num:
            raise ConfigError(f"{key} = {num}, but dataset '{name}' has {len(classes)} classes: set {key} {len(classes)}")


def _check_wiring(cfg):
    """The heads read features the backbone produces (the backbone is built on the meta device)."""
    try:
        with torch.device("meta"):
            outputs = sorted(build_backbone(cfg).output_shape())
    except KeyError as e:
        if "registry" not in str(e):
            raise
        raise ConfigError(f"MODEL.BACKBONE.NAME = {cfg.MODEL.BACKBONE.NAME!r}: {e.args[0]}") from None
    wanted = []
    if cfg.MODEL.META_ARCHITECTURE in ("GeneralizedRCNN", "PanopticFPN"):
        wanted.append(("MODEL.RPN.IN_FEATURES", cfg.MODEL.RPN.IN_FEATURES))
        wanted.append(("MODEL.ROI_HEADS.IN_FEATURES", cfg.MODEL.ROI_HEADS.IN_FEATURES))
    if "RetinaNet" in cfg.MODEL.META_ARCHITECTURE:
        wanted.append(("MODEL.RETINANET.IN_FEATURES", cfg.MODEL.RETINANET.IN_FEATURES))
    for key, features in wanted:
        missing = [f for f in features if f not in outputs]
        if missing:
            raise ConfigError(
                f"{key} = {list(features)}, but the backbone {cfg.MODEL.BACKBONE.NAME} gives {outputs}. FPN heads "
                "(p2..p6) need build_rgsnet_fpn_backbone (RetinaNet: build_retinanet_rgsnet_fpn_backbone); C4 heads "
                "(res4) need build_rgsnet_backbone with MODEL.ROI_HEADS.NAME RGSNetRes5ROIHeads."
            )


def preflight(cfg, *, eval_only=False, resuming=False, num_gpus=1):
    """Check config values, device, datasets and weights; raise a UserError naming the fix.

    ``resuming``: the weights come from OUTPUT_DIR's last checkpoint, not ``MODEL.WEIGHTS``.
    """
    _check_solver(cfg, eval_only)
    if cfg.MODEL.DEVICE.startswith("cuda"):
        check_cuda(max(num_gpus, 1), f"MODEL.DEVICE {cfg.MODEL.DEVICE!r} with --num-gpus {num_gpus}")
    elif cfg.SOLVER.AMP.ENABLED and not eval_only:
        raise ConfigError("SOLVER.AMP.ENABLED True needs CUDA (Detectron2's AMPTrainer); with MODEL.DEVICE cpu set it False")
    if eval_only and not cfg.MODEL.WEIGHTS and not resuming:
        raise ConfigError(
            "--eval-only needs trained weights: MODEL.WEIGHTS is empty, which would evaluate a randomly "
            "initialised model. Pass MODEL.WEIGHTS path/to/model_final.pth (or --resume with an OUTPUT_DIR "
            "that has a last_checkpoint)."
        )
    _check_wiring(cfg)
    train = [] if eval_only else list(cfg.DATASETS.TRAIN)
    test = list(cfg.DATASETS.TEST)
    check_dataset_files(train, parse=False)  # loaded right after this, with the file named on failure
    check_dataset_files(test, parse=True)  # otherwise first read after training
    _check_classes(cfg, train + test)
    if not resuming:
        check_weights_file(cfg.MODEL.WEIGHTS)


def _lazy_names(node):
    """Dataset names of a LazyConfig dataloader node (``dataset.names``), as a list."""
    try:
        names = node.dataset.names
    except (AttributeError, KeyError):
        return []
    if names is None:
        return []
    return [names] if isinstance(names, str) else list(names)


def lazy_preflight(cfg, *, eval_only=False, resuming=False, num_gpus=1):
    """``preflight`` for a LazyConfig: nodes present, device, datasets and weights."""
    needed = ["model", "train", "dataloader"] + ([] if eval_only else ["optimizer", "lr_multiplier"])
    missing = [n for n in needed if n not in cfg]
    if not eval_only and "dataloader" in cfg and "train" not in cfg.dataloader:
        missing.append("dataloader.train")
    if missing:
        raise ConfigError(f"the LazyConfig has no {', '.join(missing)}: a training config needs model, dataloader, "
                          "optimizer, lr_multiplier and train (see detectron2's model_zoo/configs/common/)")
    device = str(cfg.train.get("device", "cuda"))
    if device.startswith("cuda"):
        check_cuda(max(num_gpus, 1), f"train.device {device!r} with --num-gpus {num_gpus}")
    elif cfg.train.get("amp", {}).get("enabled", False) and not eval_only:
        raise ConfigError("train.amp.enabled=True needs CUDA (Detectron2's AMPTrainer); with train.device=cpu set it False")
    if not eval_only and cfg.train.max_iter < 1:
        raise ConfigError(f"train.max_iter = {cfg.train.max_iter} is invalid: give a positive number")
    weights = cfg.train.get("init_checkpoint", "")
    if eval_only and not weights and not resuming:
        raise ConfigError("--eval-only needs trained weights: train.init_checkpoint is empty, which would evaluate a "
                          "randomly initialised model. Pass train.init_checkpoint=path/to/model_final.pth.")
    train = [] if eval_only else _lazy_names(cfg.dataloader.train)
    test = _lazy_names(cfg.dataloader.test) if "test" in cfg.dataloader else []
    check_dataset_files(train, parse=False)
    check_dataset_files(test, parse=True)
    if not resuming:
        check_weights_file(weights, what="train.init_checkpoint")
