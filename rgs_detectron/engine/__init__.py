"""The training side: the trainer, its checkpointer and the COCO evaluator."""
from .checkpointer import IncompatibleCheckpointError, RGSCheckpointer, check_weights_file
from .trainer import RGSTrainer, build_evaluator
