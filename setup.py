from setuptools import find_packages, setup

setup(
    name="rgs_detectron",
    version="0.1.0",
    description="RGSNet backbones (ResNets with a nonlinear ReLU + GroupNorm shortcut) for Detectron2",
    packages=find_packages(include=["rgs_detectron", "rgs_detectron.*"]),
    python_requires=">=3.10",
    # torch, torchvision and Detectron2 are installed by tools/setup_env.sh (Detectron2
    # is not on PyPI under its own name); the rest is pinned in requirements/.
    install_requires=["fvcore", "pycocotools", "scikit-learn", "matplotlib", "tensorboard", "opencv-python-headless"],
    extras_require={"test": ["pytest", "onnx", "onnxruntime", "faster-coco-eval"]},
)
