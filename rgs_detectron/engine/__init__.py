"""The training side: the trainers, the evaluators, the checks before a run and how a run starts."""
from .trainer import RGSTrainer, build_evaluator
