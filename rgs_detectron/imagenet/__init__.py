"""The ImageNet side: the torchvision-layout classifier (the checkpoint format), its
conversion to Detectron2 weights with the report that goes with it, and pretraining."""
from .classifier import RGSNetClassifier
from .convert import ConversionError, convert_checkpoint
