"""What every training run here guarantees around Detectron2's training loop.

Shared by the yacs trainer (``RGSTrainer``) and the LazyConfig trainer: before the loop,
temporary files of a killed save are removed; a diverged loss becomes a message naming
what to lower; after the loop, ``model_final.pth`` exists, also for a run resumed after a
kill that hit its last save (it resumes at ``MAX_ITER`` with no step left to save in).
"""
import logging
import os

from detectron2.utils import comm

from ..errors import UserError, first_line

__all__ = ["TrainingDiverged", "run_guarded"]

logger = logging.getLogger(__name__)


class TrainingDiverged(UserError):
    pass


def run_guarded(train, checkpointer, output_dir, max_iter, fix):
    """``train()`` with the guarantees of the module docstring; ``fix`` says what to lower on divergence.

    ``train`` returns after the loop; ``checkpointer.trainer`` (or the returned iteration)
    tells where it ended.
    """
    removed = checkpointer.clean_stale_temp_files()
    if removed:
        logger.info(f"Removed temporary files of an interrupted save: {removed}")
    try:
        results, last_iter = train()
    except FloatingPointError as e:
        raise TrainingDiverged(f"training diverged: {first_line(e)} {fix}") from None
    final = os.path.join(output_dir, "model_final.pth")
    if comm.is_main_process() and last_iter >= max_iter and not os.path.isfile(final):
        trainer = checkpointer.checkpointables.get("trainer")
        if trainer is not None:
            trainer.iter = max_iter - 1  # what the last step's checkpoint holds, so a later resume starts at max_iter
        checkpointer.save("model_final", iteration=max_iter - 1)
    return results
