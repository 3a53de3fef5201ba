"""The paper's 5 (COCO) and 10 (VOC) epochs (Sec. 4.3) in iterations of a total batch of 16
(``dataloader.train.total_batch_size``):
the optimizer, the LR multipliers and the ``train`` nodes of Detectron2's ``common/train.py``.

LazyConfig training keeps the total batch whatever the GPU count (each GPU takes
16 / N images), so these are the paper's epochs on any number of GPUs dividing 16.
The arithmetic is in the yaml bases (``Base-COCO2014-5ep-C4.yaml``, ``Base-VOC2007-10ep-C4.yaml``).
"""
from fvcore.common.param_scheduler import MultiStepParamScheduler

from detectron2 import model_zoo
from detectron2.config import LazyCall as L
from detectron2.solver import WarmupParamScheduler

optimizer = model_zoo.get_config("common/optim.py").SGD
optimizer.lr = 0.02


def _steps(step, total, warmup):
    return L(WarmupParamScheduler)(
        scheduler=L(MultiStepParamScheduler)(values=[1.0, 0.1], milestones=[step], num_updates=total),
        warmup_length=warmup / total,
        warmup_factor=0.001,
    )


def _train(max_iter, checkpoint_period):
    train = model_zoo.get_config("common/train.py").train
    train.max_iter = max_iter
    train.checkpointer.period = checkpoint_period
    train.eval_period = 0  # evaluate once, at the end
    # Converted ImageNet weights (README, "Pretraining and converting"), relative to the directory you run from.
    train.init_checkpoint = "checkpoints/imagenet/res_rgs_50.pth"
    # Training boxes that cannot be right: "drop" them with a report, or "fail" (rgs_detectron/data/boxes.py).
    train.invalid_boxes = "drop"
    return train


coco_5ep = _steps(29317, 36646, 1000)  # LR step at epoch 4 of 5 (117,266 images)
coco_5ep_train = _train(36646, 5000)
voc_10ep = _steps(2506, 3132, 100)  # LR step at epoch 8 of 10 (5,011 images)
voc_10ep_train = _train(3132, 1000)
