"""Checks a training or evaluation run passes before anything is built.

Each catches a mistake that Detectron2 reports late (after hours of training, for a
corrupt test set) or cryptically (``ZeroDivisionError`` for ``CHECKPOINT_PERIOD 0``,
``KeyError: 'p2'`` for a C4 backbone in an FPN config, ``IndexError`` for too few
classes, an ``AssertionError`` for a batch that does not divide), and says which key or
file to change. ``preflight`` is for yacs configs, ``lazy_preflight`` for LazyConfigs;
both end in the same checks of device, data and weights.
"""
import torch

from detectron2.data import MetadataCatalog
from detectron2.engine import DefaultTrainer
from detectron2.modeling import build_backbone

from ..config import check_cuda, num_classes
from ..data.boxes import INVALID_BOX_POLICIES
from ..data.checks import check_dataset_files
from ..errors import ConfigError
from ..checkpoint.checkpointer import check_weights_file
from .trainer import EVALUATOR_TYPES

__all__ = ["preflight", "lazy_preflight"]


def _check_device(*, device, device_key, amp, amp_key, world, eval_only):
    """CUDA usable when asked for (never a silent switch to the CPU); AMP only on CUDA."""
    if str(device).startswith("cuda"):
        check_cuda(max(world, 1), f"{device_key} {device!r} with {world} process(es)")
    elif amp and not eval_only:
        raise ConfigError(f"{amp_key} needs CUDA (Detectron2's AMPTrainer); with {device_key} cpu switch it off")


def _check_inputs(*, eval_only, weights, weights_key, resuming, train, test):
    """What every run reads: its datasets, and weights that exist."""
    if eval_only and not weights and not resuming:
        raise ConfigError(f"--eval-only needs trained weights: {weights_key} is empty, which would evaluate a randomly "
                          f"initialised model. Pass {weights_key} path/to/model_final.pth (or --resume with an output "
                          "folder that has a last_checkpoint).")
    check_dataset_files(train, parse=False)  # loaded right after this, with the file named on failure
    check_dataset_files(test, parse=True)  # otherwise first read after training
    if not resuming:
        check_weights_file(weights, what=weights_key)


def _check_solver(cfg, world):
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
    if s.REFERENCE_WORLD_SIZE and s.IMS_PER_BATCH % s.REFERENCE_WORLD_SIZE:
        raise ConfigError(
            f"SOLVER.IMS_PER_BATCH = {s.IMS_PER_BATCH} does not divide among SOLVER.REFERENCE_WORLD_SIZE = "
            f"{s.REFERENCE_WORLD_SIZE} GPUs: leave the batch to the config (it scales with --num-gpus), or set "
            "SOLVER.REFERENCE_WORLD_SIZE 0 and scale BASE_LR, MAX_ITER and STEPS yourself (README, 'Schedules')"
        )
    batch = DefaultTrainer.auto_scale_workers(cfg, world).SOLVER.IMS_PER_BATCH
    if batch % world:
        raise ConfigError(f"the batch of {batch} images (SOLVER.IMS_PER_BATCH, scaled to {world} processes) does not "
                          f"divide among {world} processes: choose a GPU count that divides it")


def _check_classes(cfg, names):
    key, num = num_classes(cfg)
    for name in names:
        classes = MetadataCatalog.get(name).get("thing_classes", None)
        if classes is not None and len(classes) > num:
            raise ConfigError(f"{key} = {num}, but dataset '{name}' has {len(classes)} classes: set {key} {len(classes)}")


def _check_evaluators(names):
    for name in names:
        kind = MetadataCatalog.get(name).get("evaluator_type", None)
        if kind not in EVALUATOR_TYPES:
            raise ConfigError(f"dataset '{name}' has evaluator_type {kind!r}, which no evaluator here takes (known: "
                              f"{', '.join(EVALUATOR_TYPES)}): set it in the dataset's metadata, or leave the dataset "
                              "out of DATASETS.TEST")


def _check_wiring(cfg):
    """The heads read features the backbone produces (the backbone is built on the meta device)."""
    try:
        with torch.device("meta"):
            outputs = sorted(build_backbone(cfg).output_shape())
    except KeyError as e:
        name = e.args[0] if e.args else e
        if "registry" in str(name):
            raise ConfigError(f"MODEL.BACKBONE.NAME = {cfg.MODEL.BACKBONE.NAME!r}: {name}") from None
        raise ConfigError(
            f"the backbone cannot be built: it needs a feature {name!r} that is not produced; check "
            f"MODEL.FPN.IN_FEATURES ({list(cfg.MODEL.FPN.IN_FEATURES)}) against MODEL.RESNETS.OUT_FEATURES "
            f"({list(cfg.MODEL.RESNETS.OUT_FEATURES)})"
        ) from None
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


def preflight(cfg, *, eval_only=False, resuming=False, num_gpus=1, num_machines=1):
    """Check a yacs config's values, device, datasets and weights; raise a UserError naming the fix.

    ``resuming``: the weights come from OUTPUT_DIR's last checkpoint, not ``MODEL.WEIGHTS``.
    """
    world = max(num_gpus, 1) * max(num_machines, 1)
    _check_device(device=cfg.MODEL.DEVICE, device_key="MODEL.DEVICE", amp=cfg.SOLVER.AMP.ENABLED,
                  amp_key="SOLVER.AMP.ENABLED True", world=world, eval_only=eval_only)
    if not eval_only:
        _check_solver(cfg, world)
    _check_wiring(cfg)
    train = [] if eval_only else list(cfg.DATASETS.TRAIN)
    test = list(cfg.DATASETS.TEST)
    _check_inputs(eval_only=eval_only, weights=cfg.MODEL.WEIGHTS, weights_key="MODEL.WEIGHTS", resuming=resuming,
                  train=train, test=test)
    _check_evaluators(test)
    _check_classes(cfg, train + test)


def _lazy_names(node):
    """Dataset names of a LazyConfig dataloader node (``dataset.names``), as a list."""
    try:
        names = node.dataset.names
    except (AttributeError, KeyError):
        return []
    if names is None:
        return []
    return [names] if isinstance(names, str) else list(names)


def lazy_preflight(cfg, *, eval_only=False, resuming=False, num_gpus=1, num_machines=1):
    """``preflight`` for a LazyConfig: its nodes, then the same device, data and weights checks."""
    needed = ["model", "train", "dataloader"] + ([] if eval_only else ["optimizer", "lr_multiplier"])
    missing = [n for n in needed if n not in cfg]
    if not eval_only and "dataloader" in cfg and "train" not in cfg.dataloader:
        missing.append("dataloader.train")
    if "train" in cfg and "output_dir" not in cfg.train:
        missing.append("train.output_dir")
    if missing:
        raise ConfigError(f"the LazyConfig has no {', '.join(missing)}: a training config needs model, dataloader, "
                          "optimizer, lr_multiplier and train (see detectron2's model_zoo/configs/common/)")
    _check_device(device=cfg.train.get("device", "cuda"), device_key="train.device",
                  amp=cfg.train.get("amp", {}).get("enabled", False), amp_key="train.amp.enabled=True",
                  world=max(num_gpus, 1) * max(num_machines, 1), eval_only=eval_only)
    if not eval_only and cfg.train.max_iter < 1:
        raise ConfigError(f"train.max_iter = {cfg.train.max_iter} is invalid: give a positive number")
    _check_inputs(eval_only=eval_only, weights=cfg.train.get("init_checkpoint", ""), weights_key="train.init_checkpoint",
                  resuming=resuming, train=[] if eval_only else _lazy_names(cfg.dataloader.train),
                  test=_lazy_names(cfg.dataloader.test) if "test" in cfg.dataloader else [])
