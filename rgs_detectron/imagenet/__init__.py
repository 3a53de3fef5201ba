"""The ImageNet side: the torchvision-layout classifier (the checkpoint format), its
conversion to Detectron2 weights with the report that goes with it, and pretraining
(datasets, recipes, the training loop, the warm start from ResNet weights)."""
from .classifier import RGSNetClassifier
from .convert import ConversionError, convert_checkpoint
