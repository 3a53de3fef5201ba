"""The training side: the trainers, the evaluators, the checks before a run and how a run starts.

Runs name their datasets, so the engine registers the built-in digits with Detectron2's catalogs
(as ``rgs_detectron.config`` does): a process that ``launch`` starts imports only what it runs.
"""
from ..data import builtin  # noqa: F401  (registers rgs_digits_*)
from .trainer import RGSTrainer, build_evaluator
