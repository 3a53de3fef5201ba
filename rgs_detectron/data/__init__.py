"""Data: the built-in digits detection set (``builtin.py`` registers ``rgs_digits_*`` with Detectron2;
``rgs_detectron.config`` imports it), image reading, box checks, COCO minival splits, dataset-file checks."""
