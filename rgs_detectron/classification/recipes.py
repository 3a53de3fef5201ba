"""Named training recipes for the classifier: what the paper states, our choice for the rest.

``imagenet``: batch 256 at learning rate 0.1, divided by 10 every 30 epochs (the paper,
Sec. 4.1: it trained batch 128 at 0.05 on 4 GPUs, the same rule at half the batch). Our
choice where the paper is silent: SGD, momentum 0.9, weight decay 1e-4, and 90 epochs
(ResNet's standard), so the rate is divided at 30 and 60.

``cifar``: batch 128, weight decay 5e-4, learning rate 0.1 divided by 10 at epochs 82 and
124 of 164 (the paper, Sec. 4.2); SGD with momentum 0.9 is our choice.
docs/ARCHITECTURE.md, "Settings", lists every setting.

Other batch sizes scale the learning rate linearly (Goyal et al.); other epoch counts
scale the milestones with them (``--epochs 16`` of the CIFAR recipe steps at 8 and 12).
Scaled schedules are not the paper's: the tool's output and metrics say which was used.
"""
from dataclasses import dataclass, replace
from typing import Tuple

__all__ = ["Recipe", "RECIPES"]


@dataclass(frozen=True)
class Recipe:
    name: str
    epochs: int
    batch_size: int
    lr: float
    milestones: Tuple[int, ...]
    weight_decay: float
    momentum: float = 0.9
    gamma: float = 0.1

    def scaled(self, epochs=None, batch_size=None, lr=None):
        """This recipe for another length, batch size (linear LR rule) or explicit LR."""
        epochs = self.epochs if epochs is None else epochs
        batch_size = self.batch_size if batch_size is None else batch_size
        milestones = tuple(sorted({max(1, round(m * epochs / self.epochs)) for m in self.milestones}))
        milestones = tuple(m for m in milestones if m < epochs)
        return replace(self, epochs=epochs, batch_size=batch_size, milestones=milestones,
                       lr=lr if lr is not None else self.lr * batch_size / self.batch_size)

    def describe(self):
        steps = ", ".join(map(str, self.milestones)) or "none"
        return (f"{self.name} recipe: {self.epochs} epochs, batch {self.batch_size}, lr {self.lr:g} (x{self.gamma:g} "
                f"at epochs {steps}), momentum {self.momentum}, weight decay {self.weight_decay:g}")


RECIPES = {
    "imagenet": Recipe("imagenet", epochs=90, batch_size=256, lr=0.1, milestones=(30, 60), weight_decay=1e-4),
    "cifar": Recipe("cifar", epochs=164, batch_size=128, lr=0.1, milestones=(82, 124), weight_decay=5e-4),
}
