from setuptools import find_packages, setup

setup(
    name="rgs_detectron",
    version="0.2.0",
    description="RGSNet backbones (ResNets with a nonlinear ReLU + GroupNorm shortcut) for Detectron2",
    packages=find_packages(include=["rgs_detectron", "rgs_detectron.*"]),
    # The configs ship inside the package (rgs_detectron.model_zoo finds them).
    package_data={"rgs_detectron.model_zoo": ["configs/*.yaml", "configs/*/*.yaml", "configs/*/*.py", "configs/*/*/*.py"]},
    python_requires=">=3.11,<3.13",
    # torch, torchvision and Detectron2 are installed by tools/setup_env.sh (Detectron2 is
    # not on PyPI under its own name); the rest is pinned in requirements/.
    install_requires=["fvcore", "pycocotools", "scikit-learn", "matplotlib", "tensorboard", "opencv-python-headless"],
    extras_require={"test": ["pytest", "onnx", "onnxruntime", "faster-coco-eval"]},
    entry_points={
        "console_scripts": [
            f"rgs-{name.replace('_', '-')}=rgs_detectron.cli.{name}:main"
            for name in ("train_net", "train_classifier", "convert", "demo", "export", "analyze", "benchmark",
                         "backbone_table", "make_digits", "make_coco_minival", "digits_demo", "pretrain_study",
                         "compare_coco_eval")
        ]
    },
)
