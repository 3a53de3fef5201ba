"""rgs_detectron: RGSNet backbones for Detectron2.

Detectron2 itself is not on PyPI under its own name and cannot be declared here:
``tools/setup_env.sh`` installs it (README, "Install"). The run-time requirements below
are the names of requirements/base.txt and torch.txt with the ranges the code needs; the
exact tested versions (and every indirect one) are pinned in requirements/.
"""
from setuptools import find_packages, setup

CLI = ("train_net", "lazy_train_net", "train_classifier", "convert", "demo", "export", "analyze", "benchmark",
       "backbone_table", "make_digits", "make_coco_minival", "digits_demo", "pretrain_study", "compare_coco_eval")

setup(
    name="rgs_detectron",
    version="0.2.0",
    description="RGSNet backbones (ResNets with a nonlinear ReLU + GroupNorm shortcut) for Detectron2",
    packages=find_packages(include=["rgs_detectron", "rgs_detectron.*"]),
    # The configs ship inside the package (rgs_detectron.model_zoo finds them).
    package_data={"rgs_detectron.model_zoo": ["configs/*.yaml", "configs/*/*.yaml", "configs/*/*.py", "configs/*/*/*.py"]},
    python_requires=">=3.11,<3.14",  # tested on 3.11; the lock resolves on 3.12 and 3.13 (README, "Install")
    install_requires=[
        "torch>=2.3",
        "torchvision>=0.18",
        "numpy>=1.24",
        "pillow>=10",
        "matplotlib>=3.7",
        "pycocotools>=2.0.7",
        "termcolor>=1.1",
        "yacs>=0.1.8",
        "tabulate>=0.9",
        "cloudpickle>=2.0",
        "tqdm>=4.60",
        "tensorboard>=2.12",
        "omegaconf>=2.1,<2.4",
        "hydra-core>=1.1",
        "packaging>=21",
        "fvcore>=0.1.5,<0.1.6",
        "iopath>=0.1.7,<0.1.11",
        "PyYAML>=5.1",
        "opencv-python-headless>=4.8",
        "scikit-learn>=1.3",
        "setuptools<81",  # detectron2.model_zoo imports pkg_resources
    ],
    extras_require={
        "export": ["onnx>=1.15", "onnxruntime>=1.17"],
        "fast-eval": ["faster-coco-eval>=1.6"],
        "test": ["pytest>=8", "onnx>=1.15", "onnxruntime>=1.17", "faster-coco-eval>=1.6"],
    },
    entry_points={"console_scripts": [f"rgs-{n.replace('_', '-')}=rgs_detectron.cli.{n}:main" for n in CLI]},
)
