"""Training and evaluation for LazyConfig (``.py``) configs, with the yacs trainer's guarantees.

A LazyConfig has Detectron2's usual top-level nodes: ``model``, ``dataloader.{train,test,
evaluator}``, ``optimizer``, ``lr_multiplier`` and ``train`` (``output_dir``,
``init_checkpoint``, ``max_iter``, ``amp``, ``ddp``, ``checkpointer``, ``eval_period``,
``log_period``, ``device``), as ``detectron2/model_zoo/configs/common/train.py`` defines
them, and optionally ``train.invalid_boxes`` ("drop", the default, or "fail": what to do with
training boxes that cannot be right, checked as in the yacs trainer). The loop is Detectron2's
(``SimpleTrainer``/``AMPTrainer`` and its hooks); checkpoints go through ``RGSCheckpointer``
(atomic, strict backbone, safe reads) and the run through ``run_guarded`` (temporary-file
clean-up, divergence message, ``model_final.pth``).
"""
import logging

from detectron2.config import instantiate
from detectron2.data.build import get_detection_dataset_dicts
from detectron2.engine import AMPTrainer, SimpleTrainer, default_writers, hooks
from detectron2.evaluation import inference_on_dataset, print_csv_format
from detectron2.utils import comm

from ..checkpoint.checkpointer import RGSCheckpointer
from ..data.boxes import LAZY_SETTING, checked_train_dicts
from .guarded_run import run_guarded
from .trainer import create_ddp_model

__all__ = ["lazy_test", "lazy_train", "lazy_train_loader", "lazy_model"]

logger = logging.getLogger("detectron2")


def lazy_model(cfg):
    """The config's model on ``train.device``."""
    return instantiate(cfg.model).to(cfg.train.device)


def lazy_test(cfg, model):
    """Evaluate with ``dataloader.test`` and ``dataloader.evaluator``; None without an evaluator."""
    if "evaluator" not in cfg.dataloader:
        return None
    results = inference_on_dataset(model, instantiate(cfg.dataloader.test), instantiate(cfg.dataloader.evaluator))
    print_csv_format(results)
    return results


def lazy_train_loader(cfg):
    """``dataloader.train``, its records' boxes checked (``train.invalid_boxes``) as the yacs trainer checks them."""
    node = cfg.dataloader.train
    dicts = instantiate(node.dataset)
    if isinstance(dicts, list):  # Detectron2's records; a torch Dataset is left as it is
        dataset = node.dataset
        filter_empty = dataset.get("_target_") is get_detection_dataset_dicts and dataset.get("filter_empty", True)
        dicts = checked_train_dicts(dicts, f"dataloader.train.dataset {dataset.get('names', '')}".rstrip(),
                                    cfg.train.get("invalid_boxes", "drop"), filter_empty, LAZY_SETTING)
    return instantiate({**node, "dataset": dicts})


def lazy_train(cfg, resume=False):
    """Train as the config says; returns the last evaluation's results."""
    model = lazy_model(cfg)
    logger.info(f"Model:\n{model}")
    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    loader = lazy_train_loader(cfg)
    model = create_ddp_model(model, **cfg.train.ddp)
    trainer = (AMPTrainer if cfg.train.amp.enabled else SimpleTrainer)(model, loader, optimizer)
    checkpointer = RGSCheckpointer(model, cfg.train.output_dir, optimizer=optimizer, trainer=trainer)
    results = {}

    def evaluate():
        results["last"] = lazy_test(cfg, model)
        return results["last"]

    trainer.register_hooks([
        hooks.IterationTimer(),
        hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
        hooks.PeriodicCheckpointer(checkpointer, **cfg.train.checkpointer) if comm.is_main_process() else None,
        hooks.EvalHook(cfg.train.eval_period, evaluate),
        hooks.PeriodicWriter(default_writers(cfg.train.output_dir, cfg.train.max_iter), period=cfg.train.log_period)
        if comm.is_main_process() else None,
    ])
    checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=resume)
    start_iter = trainer.iter + 1 if resume and checkpointer.has_checkpoint() else 0

    def loop():
        trainer.train(start_iter, cfg.train.max_iter)
        return results.get("last"), trainer.iter

    fix = (f"Lower optimizer.lr (now {cfg.optimizer.lr}), lengthen the warm-up of lr_multiplier, or clip "
           "gradients; from scratch, use a trainable norm (BN, SyncBN or GN) and freeze_at 0.")
    return run_guarded(loop, checkpointer, cfg.train.output_dir, cfg.train.max_iter, fix)
