"""``RGSPredictor``: Detectron2's ``DefaultPredictor`` with this project's weight loading.

``DefaultPredictor`` loads ``MODEL.WEIGHTS`` with Detectron2's plain checkpointer, which
warns and carries on when the weights belong to another variant or depth, and unpickles
``.pkl`` files. This one loads through ``RGSCheckpointer`` (strict backbone, safe reads)
and refuses to run without weights, so a demo or export never silently uses a random or
half-loaded model. Everything else (test-time resize, ``INPUT.FORMAT``, BGR input) is
``DefaultPredictor``'s.
"""
from detectron2.engine import DefaultPredictor

from ..errors import ConfigError
from ..checkpoint.checkpointer import RGSCheckpointer, check_weights_file

__all__ = ["RGSPredictor"]


class RGSPredictor(DefaultPredictor):
    """Call with an HxWx3 **BGR** uint8 image (as ``DefaultPredictor``); returns the model's output dict."""

    def __init__(self, cfg):
        if not cfg.MODEL.WEIGHTS:
            raise ConfigError("MODEL.WEIGHTS is empty: give trained weights (--weights), not a random model")
        check_weights_file(cfg.MODEL.WEIGHTS)
        bare = cfg.clone()
        bare.defrost()
        bare.MODEL.WEIGHTS = ""  # DefaultPredictor then loads nothing; the strict load follows
        super().__init__(bare)
        self.cfg = cfg.clone()
        RGSCheckpointer(self.model).load(cfg.MODEL.WEIGHTS)
