"""COCO evaluation with a choice of COCOeval engine.

Detectron2's ``COCOEvaluator`` runs pycocotools' pure-Python ``COCOeval`` unless its own
C++ ``_C`` is built, which it is not for the wheel this project uses on Python 3.11
(docs/ARCHITECTURE.md, "Dependencies"). ``faster-coco-eval`` ships a compiled ``COCOeval_faster`` with the
same API and the same numbers, many times faster on COCO-sized evaluations (see
``docs/USAGE.md`` and ``python tools/compare_coco_eval.py``).

``RGSCOCOEvaluator`` is Detectron2's evaluator with only the COCOeval step swapped; the
results dict (keys, scale, per-category AP) is the one ``COCOEvaluator`` returns.

Engines:
    "auto"             faster-coco-eval if it is importable, else pycocotools
    "faster_coco_eval" faster-coco-eval; fails at construction if it is not installed
    "pycocotools"      Detectron2's own code path with the official pycocotools COCOeval
"""
import contextlib
import copy
import io
import itertools
import json
import os

from pycocotools.cocoeval import COCOeval

from detectron2.evaluation import COCOEvaluator
from detectron2.evaluation.coco_evaluation import _evaluate_predictions_on_coco
from detectron2.utils.file_io import PathManager

from ..errors import ConfigError

__all__ = ["RGSCOCOEvaluator", "build_coco_evaluator", "evaluate_on_coco", "load_coco_gt", "resolve_engine"]

COCO_EVAL_ENGINES = ("auto", "faster_coco_eval", "pycocotools")


def faster_coco_eval_available():
    try:
        import faster_coco_eval  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_engine(engine):
    """Turn an engine setting into "faster_coco_eval" or "pycocotools", or fail clearly."""
    name = str(engine).lower()
    if name not in COCO_EVAL_ENGINES:
        raise ConfigError(f"TEST.COCO_EVAL_ENGINE = {engine!r} is invalid: choose one of "
                          f"{', '.join(COCO_EVAL_ENGINES)}")
    if name == "auto":
        return "faster_coco_eval" if faster_coco_eval_available() else "pycocotools"
    if name == "faster_coco_eval" and not faster_coco_eval_available():
        raise ConfigError("COCO eval engine 'faster_coco_eval' was requested but the package is not installed: "
                          "pip install faster-coco-eval, or set TEST.COCO_EVAL_ENGINE to 'auto' or 'pycocotools'")
    return name


def load_coco_gt(json_file_or_dict, engine):
    """Ground truth as the ``COCO`` class of ``engine`` (each engine needs its own)."""
    if isinstance(json_file_or_dict, dict):
        # A copy: the annotations must not be shared with another COCO object, since both engines write "ignore"
        # flags into them (faster-coco-eval copies only the top level).
        json_file_or_dict = copy.deepcopy(json_file_or_dict)
    if resolve_engine(engine) == "faster_coco_eval":
        from faster_coco_eval import COCO

        return COCO(json_file_or_dict)
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        if not isinstance(json_file_or_dict, dict):
            return COCO(json_file_or_dict)
        coco = COCO()
        coco.dataset = json_file_or_dict
        coco.createIndex()
    return coco


def evaluate_on_coco(coco_gt, coco_results, iou_type, engine, *, kpt_oks_sigmas=(), img_ids=None,
                     max_dets_per_image=None):
    """Run evaluate / accumulate / summarize with ``engine``; return the COCOeval object.

    ``coco_gt`` must come from :func:`load_coco_gt` with the same engine. The result
    dicts are modified in place by ``loadRes`` (as in pycocotools), so pass a copy if
    they are used again. ``max_dets_per_image`` is COCOEvaluator's ``[1, 10, N]``.
    """
    if resolve_engine(engine) == "pycocotools":
        return _evaluate_predictions_on_coco(coco_gt, coco_results, iou_type, kpt_oks_sigmas=kpt_oks_sigmas,
                                             cocoeval_fn=COCOeval, img_ids=img_ids,
                                             max_dets_per_image=max_dets_per_image)

    from faster_coco_eval import COCOeval_faster

    assert len(coco_results) > 0, "COCOeval cannot evaluate an empty result list"
    if iou_type == "segm":
        # As Detectron2 does: without "bbox", the mask area decides small/medium/large.
        coco_results = [{k: v for k, v in r.items() if k != "bbox"} for r in coco_results]
    coco_dt = coco_gt.loadRes(coco_results)
    # print_function=print: the summary table goes where pycocotools prints it (stdout).
    coco_eval = COCOeval_faster(coco_gt, coco_dt, iou_type, print_function=print,
                                kpt_oks_sigmas=list(kpt_oks_sigmas) if kpt_oks_sigmas else None)
    if iou_type != "keypoints":
        # COCOeval_faster summarizes AR for whatever maxDets holds, so a custom limit
        # needs no special class (pycocotools needs Detectron2's COCOevalMaxDets).
        coco_eval.params.maxDets = list(max_dets_per_image or [1, 10, 100])
    if img_ids is not None:
        coco_eval.params.imgIds = img_ids
    coco_eval.evaluate()
    coco_eval.accumulate()
    coco_eval.summarize()
    return coco_eval


class RGSCOCOEvaluator(COCOEvaluator):
    """Detectron2's ``COCOEvaluator`` whose COCOeval engine can be faster-coco-eval.

    Everything but the COCOeval call is Detectron2's: ``process``, proposal AR, the
    output files and ``_derive_coco_results`` (so the results dict is identical).

    Args:
        engine: "auto", "faster_coco_eval" or "pycocotools" (see the module docstring).
        other arguments: as ``COCOEvaluator``. ``use_fast_impl`` is not accepted: the
            engine choice replaces it (Detectron2's C++ COCOeval is not built here).
    """

    def __init__(self, dataset_name, tasks=None, distributed=True, output_dir=None, *, engine="auto", **kwargs):
        if "use_fast_impl" in kwargs:
            raise TypeError("RGSCOCOEvaluator: pass engine= instead of use_fast_impl=")
        self.engine = resolve_engine(engine)  # "auto" resolved: "faster_coco_eval" or "pycocotools"
        super().__init__(dataset_name, tasks=tasks, distributed=distributed, output_dir=output_dir, use_fast_impl=False,
                         **kwargs)
        self._faster_coco_gt = None  # loaded on first use; Detectron2 keeps its pycocotools copy
        self._logger.info(f"COCO evaluation engine: {self.engine}")

    def _eval_predictions(self, predictions, img_ids=None):
        if self.engine == "pycocotools":
            return super()._eval_predictions(predictions, img_ids=img_ids)

        coco_results = self._coco_results(predictions)
        if not self._do_evaluation:
            self._logger.info("Annotations are not available for evaluation.")
            return
        if self._faster_coco_gt is None:
            self._faster_coco_gt = load_coco_gt(PathManager.get_local_path(self._metadata.json_file), self.engine)
        self._logger.info("Evaluating predictions with faster-coco-eval ...")
        tasks = self._tasks or self._tasks_from_predictions(coco_results)
        for task in sorted(tasks):
            assert task in {"bbox", "segm", "keypoints"}, f"Got unknown task: {task}!"
            # New dicts: loadRes writes into them. No predictions: Detectron2 reports NaN for every metric.
            coco_eval = evaluate_on_coco(self._faster_coco_gt, [dict(r) for r in coco_results], task, self.engine,
                                         kpt_oks_sigmas=self._kpt_oks_sigmas, img_ids=img_ids,
                                         max_dets_per_image=self._max_dets_per_image) if coco_results else None
            self._results[task] = self._derive_coco_results(coco_eval, task,
                                                            class_names=self._metadata.get("thing_classes"))

    def _coco_results(self, predictions):
        """COCO-format results with dataset category ids, saved like Detectron2 does."""
        # The first half of Detectron2 0.7.2's COCOEvaluator._eval_predictions (a59f0563), changed: copies, raises.
        # New dicts: unlike Detectron2, evaluate() may be called again on the same predictions.
        coco_results = [dict(r) for r in itertools.chain(*[p["instances"] for p in predictions])]
        id_map = self._metadata.get("thing_dataset_id_to_contiguous_id")
        if id_map:
            to_dataset_id = {contiguous: dataset_id for dataset_id, contiguous in id_map.items()}
            for result in coco_results:
                contiguous = result["category_id"]
                if contiguous not in to_dataset_id:
                    raise ValueError(f"A prediction has class={contiguous}, but the dataset only has "
                                     f"{len(to_dataset_id)} classes (valid: 0..{len(to_dataset_id) - 1}).")
                result["category_id"] = to_dataset_id[contiguous]
        if self._output_dir:
            path = os.path.join(self._output_dir, "coco_instances_results.json")
            self._logger.info(f"Saving results to {path}")
            with PathManager.open(path, "w") as f:
                f.write(json.dumps(coco_results))
        return coco_results


def build_coco_evaluator(cfg, dataset_name, output_dir, distributed=True):
    """The COCO evaluator a trainer should use, engine from ``cfg.TEST.COCO_EVAL_ENGINE``."""
    return RGSCOCOEvaluator(dataset_name, distributed=distributed, output_dir=output_dir,
                            engine=cfg.TEST.get("COCO_EVAL_ENGINE",
                                                "auto"), kpt_oks_sigmas=tuple(cfg.TEST.KEYPOINT_OKS_SIGMAS))
