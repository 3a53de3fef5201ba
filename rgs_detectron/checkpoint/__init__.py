"""Weights files: the checkpointer that trains and loads detectors (atomic saves, strict and
safe loads) and the converter from classifier checkpoints to Detectron2 weights."""
from .checkpointer import IncompatibleCheckpointError, RGSCheckpointer, check_weights_file, load_weights
from .convert import ConversionError, convert_checkpoint
