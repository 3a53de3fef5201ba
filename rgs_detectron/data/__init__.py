"""Data: the built-in digits detection set, image reading, box checks, COCO minival splits,
dataset-file checks. Importing it registers the ``rgs_digits_*`` datasets."""
from . import builtin  # noqa: F401  (registers rgs_digits_*)
from .checks import check_dataset_files
from .digits import CLASS_NAMES as DIGIT_CLASSES
from .digits import generate_digits_dataset
from .images import read_image
