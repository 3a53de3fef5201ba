"""The classification side: the torchvision-layout classifier (the checkpoint format that the
converter reads) and its pretraining (datasets, recipes, the training loop, the warm start
from ResNet weights)."""
from .classifier import RGSNetClassifier
