"""Checks a training or evaluation run passes before anything is built.

Each catches a mistake that Detectron2 reports late (after hours of training, for a
corrupt test set or a class count the evaluator cannot map) or cryptically
(``ZeroDivisionError`` for ``CHECKPOINT_PERIOD 0``, ``KeyError: 'p2'`` for a C4 backbone
in an FPN config, ``IndexError`` for too few classes, an ``AssertionError`` for a batch
that does not divide), and says which key or file to change. Every check runs, and every
problem found is reported in one message: one failed start, not one per problem.
``preflight`` is for yacs configs, ``lazy_preflight`` for LazyConfigs; both end in the
same checks of device, data, weights, resume point and output folder.
"""
import os

import torch
from omegaconf import OmegaConf

from detectron2.data import MetadataCatalog
from detectron2.engine import DefaultTrainer
from detectron2.modeling import build_backbone

from ..checkpoint.checkpointer import RGSCheckpointer, check_weights_file
from ..config import check_cuda, num_classes
from ..data.boxes import check_box_policy
from ..data.checks import check_dataset_files
from ..errors import ConfigError, UserError
from ..utils.fileio import check_room
from .launch import check_output_dir, resuming
from .trainer import check_evaluator_type

__all__ = ["preflight", "lazy_preflight"]


class _Problems(list):
    """Runs checks, keeps every UserError, and raises them together (the first one's class and exit status)."""

    def check(self, function, *args, **kwargs):
        """``function(*args, **kwargs)``, or None with its UserError kept."""
        try:
            return function(*args, **kwargs)
        except UserError as e:
            self.append(e)

    def add(self, message):
        self.append(ConfigError(message))

    def raise_all(self):
        if len(self) == 1:
            raise self[0]
        if self:
            items = "\n  - ".join(str(e).replace("\n", "\n    ") for e in self)
            raise type(self[0])(f"{len(self)} problems, found before anything was built:\n  - {items}")


def _check_device(*, device, device_key, cpu, amp, amp_key, world, eval_only):
    """CUDA usable when asked for (never a silent switch to the CPU); AMP only on CUDA. ``cpu``: the setting for it."""
    if str(device).startswith("cuda"):
        check_cuda(max(world, 1), f"{device_key} {device!r} with {world} process(es)", cpu=cpu)
    elif amp and not eval_only:
        raise ConfigError(f"{amp_key} needs CUDA (Detectron2's AMPTrainer); with {cpu} switch it off")


def _check_inputs(problems, *, eval_only, weights, weights_key, resuming, train, test):
    """What every run reads: its datasets, and weights that exist."""
    if eval_only and not weights and not resuming:
        problems.add(f"--eval-only needs trained weights: {weights_key} is empty, which would evaluate a randomly "
                     f"initialised model. Pass {weights_key} path/to/model_final.pth (or --resume with an output "
                     "folder that has a last_checkpoint).")
    # Test annotations are parsed (otherwise first read after training); training ones are loaded right after this.
    problems.check(check_dataset_files, train + test, parse=test)
    if not resuming:
        problems.check(check_weights_file, weights, what=weights_key)


def _check_count(value, key, least=1):
    """A ConfigError unless ``value`` is a whole number of at least ``least`` (a LazyConfig's may be a string)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ConfigError(f"{key} = {value!r} is invalid: give a whole number of {least} or more")


def _check_solver(cfg, world):
    s = cfg.SOLVER
    for key in ("MAX_ITER", "CHECKPOINT_PERIOD", "IMS_PER_BATCH"):
        _check_count(s[key], f"SOLVER.{key}")
    _check_count(cfg.TEST.EVAL_PERIOD, "TEST.EVAL_PERIOD", least=0)
    if s.BASE_LR <= 0:
        raise ConfigError(f"SOLVER.BASE_LR = {s.BASE_LR} is invalid: give a positive learning rate")
    check_box_policy(cfg.DATASETS.get("INVALID_BOXES", "drop"))
    if s.REFERENCE_WORLD_SIZE and s.IMS_PER_BATCH % s.REFERENCE_WORLD_SIZE:
        raise ConfigError(f"SOLVER.IMS_PER_BATCH = {s.IMS_PER_BATCH} does not divide among "
                          f"SOLVER.REFERENCE_WORLD_SIZE = {s.REFERENCE_WORLD_SIZE} GPUs: leave the batch to the config "
                          "(it scales with --num-gpus), or set SOLVER.REFERENCE_WORLD_SIZE 0 and scale BASE_LR, "
                          "MAX_ITER and STEPS yourself (docs/TRAINING.md, 'Schedules')")
    scaled = DefaultTrainer.auto_scale_workers(cfg, world)
    batch = scaled.SOLVER.IMS_PER_BATCH
    if batch % world:
        raise ConfigError(f"the batch of {batch} images (SOLVER.IMS_PER_BATCH, scaled to {world} processes) does not "
                          f"divide among {world} processes: choose a GPU count that divides it")
    return scaled


def _check_classes(key, num, train, test, sep=" "):
    """Too few classes fail in training (IndexError); more than a test set has, at its evaluation (after training)."""
    for name in dict.fromkeys(train + test):
        n = len(MetadataCatalog.get(name).get("thing_classes", None) or []) or num
        if n > num:
            raise ConfigError(f"{key} = {num}, but dataset '{name}' has {n} classes: set {key}{sep}{n}")
        if n < num and name in test:
            raise ConfigError(f"{key} = {num}, but test dataset '{name}' has {n} classes, so its evaluation would "
                              f"fail at the first prediction of class {n} or above, after all the training or "
                              f"inference: set {key}{sep}{n}")


def _check_wiring(cfg):
    """The heads read features the backbone produces (the backbone is built on the meta device)."""
    try:
        with torch.device("meta"):
            outputs = sorted(build_backbone(cfg).output_shape())
    except KeyError as e:
        name = e.args[0] if e.args else e
        if "registry" in str(name):
            raise ConfigError(f"MODEL.BACKBONE.NAME = {cfg.MODEL.BACKBONE.NAME!r}: {name}") from None
        raise ConfigError(f"the backbone cannot be built: it needs a feature {name!r} that is not produced; check "
                          f"MODEL.FPN.IN_FEATURES ({list(cfg.MODEL.FPN.IN_FEATURES)}) against "
                          f"MODEL.RESNETS.OUT_FEATURES ({list(cfg.MODEL.RESNETS.OUT_FEATURES)})") from None
    heads = ["RPN", "ROI_HEADS"] if cfg.MODEL.META_ARCHITECTURE in ("GeneralizedRCNN", "PanopticFPN") else []
    if "RetinaNet" in cfg.MODEL.META_ARCHITECTURE:
        heads.append("RETINANET")
    for head in heads:
        features = cfg.MODEL[head].IN_FEATURES
        if not set(features) <= set(outputs):
            raise ConfigError(f"MODEL.{head}.IN_FEATURES = {list(features)}, but the backbone "
                              f"{cfg.MODEL.BACKBONE.NAME} gives {outputs}. FPN heads (p2..p6) need "
                              "build_rgsnet_fpn_backbone (RetinaNet: build_retinanet_rgsnet_fpn_backbone); C4 heads "
                              "(res4) need build_rgsnet_backbone with MODEL.ROI_HEADS.NAME RGSNetRes5ROIHeads.")


def _check_run(problems, args, output_dir, output_key, max_iter, max_iter_key, weights):
    """The output folder is named; a resume has steps left (unless ``max_iter`` is None: unknown); a new run
    replaces no other run's model unless told to; the output folder has room for the run's first checkpoints
    (checkpoints hold the weights and the optimizer's momentum: about 3x a weights file)."""
    if not str(output_dir or "").strip():
        problems.add(f"{output_key} is empty: name the folder for the run's files")
    if resuming(output_dir, args) and not args.eval_only and isinstance(max_iter, int):
        last = RGSCheckpointer(None, output_dir).last_iteration()
        if last + 1 > max_iter:  # exactly at the end is a resume that finishes an interrupted last save
            problems.add(f"the last checkpoint in {output_dir!r} is at iteration {last}, past {max_iter_key} = "
                         f"{max_iter}: that run is complete. Raise {max_iter_key} to train on, or evaluate it with "
                         "--eval-only.")
    problems.check(check_output_dir, output_dir, args)
    size = os.path.getsize(weights) if weights and os.path.isfile(weights) else 0
    problems.check(check_room, output_dir, 3 * size + (64 << 20))


def preflight(cfg, args):
    """Check a yacs config's values, device, datasets, weights and output folder for the run ``args`` ask for
    (``train_net``'s arguments); raise one UserError naming every problem and its fix."""
    world = max(args.num_gpus, 1) * max(args.num_machines, 1)
    eval_only, problems = args.eval_only, _Problems()
    problems.check(_check_device, device=cfg.MODEL.DEVICE, device_key="MODEL.DEVICE", cpu="MODEL.DEVICE cpu",
                   amp=cfg.SOLVER.AMP.ENABLED, amp_key="SOLVER.AMP.ENABLED True", world=world, eval_only=eval_only)
    scaled = None if eval_only else problems.check(_check_solver, cfg, world)  # as the trainer will see it
    problems.check(_check_wiring, cfg)
    train = [] if eval_only else list(cfg.DATASETS.TRAIN)
    test = list(cfg.DATASETS.TEST)
    _check_inputs(problems, eval_only=eval_only, weights=cfg.MODEL.WEIGHTS, weights_key="MODEL.WEIGHTS",
                  resuming=resuming(cfg.OUTPUT_DIR, args), train=train, test=test)
    for name in test:
        problems.check(check_evaluator_type, name)
    problems.check(_check_classes, *num_classes(cfg), train, test)
    _check_run(problems, args, cfg.OUTPUT_DIR, "OUTPUT_DIR", scaled and scaled.SOLVER.MAX_ITER, "SOLVER.MAX_ITER",
               cfg.MODEL.WEIGHTS)
    problems.raise_all()


def _lazy_names(node):
    """Dataset names of a LazyConfig dataloader node (``dataset.names``), as a list."""
    try:
        names = node.dataset.names
    except (AttributeError, KeyError):
        names = None
    return [names] if isinstance(names, str) else list(names or [])


def _lazy_num_classes(cfg):
    """(key, class count) of a LazyConfig's model: the ROI heads', or RetinaNet's own; None when it has neither."""
    for key in ("model.roi_heads.num_classes", "model.num_classes"):
        value = OmegaConf.select(cfg, key, default=None)
        if isinstance(value, int):
            return key, value
    return None


# The counts a LazyConfig run divides by or loops to (Detectron2's common train.py has the train.* ones).
LAZY_COUNTS = (("train.max_iter", 1), ("train.checkpointer.period", 1), ("train.log_period", 1),
               ("train.eval_period", 0), ("dataloader.train.total_batch_size", 1))


def lazy_preflight(cfg, args):
    """``preflight`` for a LazyConfig: its nodes, then the same device, data, weights and output checks."""
    eval_only = args.eval_only
    needed = ["model", "train", "dataloader"] + ([] if eval_only else ["optimizer", "lr_multiplier"])
    missing = [n for n in needed if n not in cfg]
    if not eval_only and "dataloader" in cfg and "train" not in cfg.dataloader:
        missing.append("dataloader.train")
    keys = ["output_dir"] + ([] if eval_only else ["max_iter"])
    missing += [f"train.{key}" for key in keys if "train" in cfg and key not in cfg.train]
    if missing:
        raise ConfigError(f"the LazyConfig has no {', '.join(missing)}: a training config needs model, dataloader, "
                          "optimizer, lr_multiplier and train (see detectron2's model_zoo/configs/common/)")
    problems, world = _Problems(), max(args.num_gpus, 1) * max(args.num_machines, 1)
    problems.check(_check_device, device=cfg.train.get("device", "cuda"), device_key="train.device",
                   cpu="train.device=cpu", amp=cfg.train.get("amp", {}).get("enabled", False),
                   amp_key="train.amp.enabled=True", world=world, eval_only=eval_only)
    if not eval_only:
        for key, least in LAZY_COUNTS:
            value = OmegaConf.select(cfg, key, default=None)
            if value is not None:
                problems.check(_check_count, value, key, least)
        batch = OmegaConf.select(cfg, "dataloader.train.total_batch_size", default=None)
        if isinstance(batch, int) and batch % world:
            problems.add(f"dataloader.train.total_batch_size = {batch} does not divide among {world} processes: "
                         "choose a process count that divides it")
        problems.check(check_box_policy, cfg.train.get("invalid_boxes", "drop"), "train.invalid_boxes")
    output_dir = cfg.train.output_dir
    train = [] if eval_only else _lazy_names(cfg.dataloader.train)
    test = _lazy_names(cfg.dataloader.test) if "test" in cfg.dataloader else []
    _check_inputs(problems, eval_only=eval_only, weights=cfg.train.get("init_checkpoint", ""),
                  weights_key="train.init_checkpoint", resuming=resuming(output_dir, args), train=train, test=test)
    classes = _lazy_num_classes(cfg)
    if classes:
        problems.check(_check_classes, *classes, train, test, sep="=")
    _check_run(problems, args, output_dir, "train.output_dir", cfg.train.get("max_iter"), "train.max_iter",
               cfg.train.get("init_checkpoint", ""))
    problems.raise_all()
