"""rgs_detectron: RGSNet backbones for Detectron2.

The requirements below are ranges: what the code needs. The exact tested versions (and
every indirect dependency) live only in the lock files under requirements/, which
tools/setup_env.sh installs into the project's own .venv (docs/INSTALL.md).

Three things are deliberately not in REQUIRES, so that `pip install` never replaces a
build the user chose:
- torch/torchvision: a user's CUDA, ROCm, CPU or source build that pip does not count as
  satisfying (too old, installed without pip's metadata, or any build under
  `pip install -U`) would be replaced by PyPI's CUDA build. Detectron2's own setup.py
  does not declare torch for the same reason; the set-up checks the torch it finds. The
  extra `torch` declares them for those who want PyPI's build.
- opencv: Detectron2 needs it only to draw pictures (and rgs_detectron for the digits
  dataset); opencv-python, -headless and conda's opencv all provide cv2 and overwrite each
  other. The extra `opencv` installs the headless build; the set-up installs it only when
  no cv2 imports.
- Detectron2: not on PyPI under its own name; the set-up installs it.
"""
from pathlib import Path

from setuptools import find_packages, setup

# Every module of rgs_detectron/cli is a command line: console script rgs-NAME runs NAME's main().
CLI = sorted(p.stem for p in Path(__file__).resolve().parent.glob("rgs_detectron/cli/*.py") if p.stem != "__init__")
# The Pythons rgs_detectron supports, each run by CI (.ci/run). tests/test_setup_script.py holds the other places
# that name them (tools/setup_env.sh, tools/check_lock.py, the docs) equal to this one.
PYTHONS = ("3.11", "3.12", "3.13")

# Detectron2's run-time dependencies (its wheel is installed --no-deps) and ours.
REQUIRES = [
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
    "omegaconf>=2.1,<2.4",  # Detectron2's range
    "hydra-core>=1.1",
    "packaging>=21",
    "fvcore>=0.1.5,<0.1.6",  # Detectron2's range
    "iopath>=0.1.7,<0.1.11",
    "PyYAML>=5.1",
    "scikit-learn>=1.3",  # the handwritten digits of the built-in dataset
    "setuptools<82",  # detectron2.model_zoo imports pkg_resources, which setuptools 82 removed
]
EXTRAS = {
    "torch": ["torch>=2.3", "torchvision>=0.18"],
    "opencv": ["opencv-python-headless>=4.8"],  # cv2.findContours's two results need OpenCV >= 4
    "export": ["onnx>=1.15", "onnxruntime>=1.17"],
    "fast-eval": ["faster-coco-eval>=1.6"],
    "test": ["pytest>=8", "pytest-xdist>=3.5", "onnx>=1.15", "onnxruntime>=1.17", "faster-coco-eval>=1.6"],
    "lint": ["ruff>=0.5", "yapf>=0.40"],  # make lint: the linter and the formatter CI runs
}

setup(
    name="rgs_detectron",
    version="0.2.0",
    description="RGSNet backbones (ResNets with a nonlinear ReLU + GroupNorm shortcut) for Detectron2",
    packages=find_packages(include=["rgs_detectron", "rgs_detectron.*"]),
    # The configs ship inside the package (rgs_detectron.model_zoo finds them).
    package_data={
        "rgs_detectron.model_zoo": ["configs/*.yaml", "configs/*/*.yaml", "configs/*/*.py", "configs/*/*/*.py"]
    },
    license="Apache-2.0",  # Detectron2's licence (an SPDX name: setuptools deprecates License classifiers)
    license_files=["LICENSE"],
    classifiers=[
        "Development Status :: 4 - Beta",
        "Intended Audience :: Science/Research",
        "Operating System :: POSIX :: Linux",
        "Programming Language :: Python :: 3",
        *(f"Programming Language :: Python :: {version}" for version in PYTHONS),
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
        "Topic :: Scientific/Engineering :: Image Recognition",
    ],
    python_requires=f">={PYTHONS[0]},<3.{int(PYTHONS[-1].split('.')[1]) + 1}",  # docs/INSTALL.md
    install_requires=REQUIRES,
    extras_require=EXTRAS,
    entry_points={"console_scripts": [f"rgs-{n.replace('_', '-')}=rgs_detectron.cli.{n}:main" for n in CLI]},
)
