"""Running a trained detector: ``load_trained_model``, the one way a model is loaded for inference.

Detectron2's ``DefaultPredictor`` and ``--eval-only`` load ``MODEL.WEIGHTS`` with a
checkpointer that warns and carries on: another variant's weights, ImageNet weights that
leave every head random (100 junk detections, exit status 0), a box predictor shaped for
another class count. ``load_trained_model`` builds the model, loads it with
``RGSCheckpointer(complete=True)`` (the architecture the file records must be the model's,
and every parameter and buffer must come from the file) and puts it in eval mode. The
demo, the export, ``train_net``/``lazy_train_net --eval-only`` and ``analyze --weights``
use it; fine-tuning to a new class count stays a training matter.
"""
import torch

from detectron2.config import CfgNode
from detectron2.data import MetadataCatalog
from detectron2.data import transforms as T
from detectron2.engine import DefaultPredictor
from detectron2.modeling import build_model

from ..checkpoint.checkpointer import RGSCheckpointer, check_weights_file
from ..errors import ConfigError
from ..export import require_dynamo
from .lazy_trainer import lazy_model

__all__ = ["RGSPredictor", "load_trained_model"]


def load_trained_model(cfg, *, resume=False):
    """The trained model of a yacs ``cfg`` (``MODEL.WEIGHTS``) or a LazyConfig (``train.init_checkpoint``),
    in eval mode; with ``resume``, the last checkpoint of the output folder when there is one."""
    if isinstance(cfg, CfgNode):
        model, weights, key, folder = build_model(cfg), cfg.MODEL.WEIGHTS, "MODEL.WEIGHTS", cfg.OUTPUT_DIR
    else:
        model, weights, key = lazy_model(cfg), cfg.train.get("init_checkpoint", ""), "train.init_checkpoint"
        folder = cfg.train.get("output_dir", "")
    checkpointer = RGSCheckpointer(model, folder, complete=True)
    if not (resume and checkpointer.has_checkpoint()):
        if not weights:
            raise ConfigError(f"{key} is empty: give trained weights (--weights or {key}), not a random model")
        check_weights_file(weights, what=key)
    checkpointer.resume_or_load(weights, resume=resume)
    return model.eval()


class RGSPredictor(DefaultPredictor):
    """``DefaultPredictor`` whose model comes from :func:`load_trained_model`.

    Call with an HxWx3 **BGR** uint8 image (as ``DefaultPredictor``); returns the model's
    output dict. Test-time resize and ``INPUT.FORMAT`` are ``DefaultPredictor``'s.
    """

    def __init__(self, cfg, compile=False):
        # DefaultPredictor.__init__ of Detectron2 0.7.2, except where the model comes from, and ``compile``: the
        # backbone compiled by torch.compile (inductor's defaults): the first call compiles (minutes on a CPU),
        # the first at another image size or thread count once more (docs/BENCHMARK.md measures it).
        self.cfg = cfg.clone()
        self.model = load_trained_model(self.cfg)
        if compile:
            require_dynamo("compile (the demo's --compile)", "torch.compile", "run without it")
            self.model.backbone = torch.compile(self.model.backbone)
        if len(cfg.DATASETS.TEST):
            self.metadata = MetadataCatalog.get(cfg.DATASETS.TEST[0])
        self.aug = T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MIN_SIZE_TEST], cfg.INPUT.MAX_SIZE_TEST)
        self.input_format = cfg.INPUT.FORMAT
