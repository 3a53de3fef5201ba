"""Datasets for pretraining the classifier, read through torchvision's own dataset classes.

* ``imagenet``: ``ImageFolder`` on ``ROOT/train`` and ``ROOT/val`` (one folder per class,
  the layout of the usual ImageNet preparation scripts);
* ``cifar10`` / ``cifar100``: torchvision's ``CIFAR10`` / ``CIFAR100`` (``--download`` fetches them);
* ``fashion_mnist``: torchvision's ``FashionMNIST``, whose files come from Debian's
  ``dataset-fashion-mnist`` package (``/usr/share/datasets/fashion-mnist``, unpacked once
  into ``ROOT/FashionMNIST/raw``) or from torchvision's download (``--download``);
* ``digits``: scikit-learn's bundled 8x8 handwritten digits (1,797 images, nothing to
  download), 1,497 for training and 300 held out.

Every image becomes 3-channel RGB, normalized with the ImageNet mean and std that
torchvision-style weights assume (the converter tells detection configs the same).
"""
import gzip
import os
import shutil

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Subset
from torchvision import datasets as tvd
from torchvision import transforms as T

from ..errors import ConfigError, InputError, first_line
from ..utils.fileio import atomic_write

__all__ = ["DATASETS", "build_datasets", "FASHION_MNIST_DEBIAN", "prepare_fashion_mnist"]

DATASETS = ("imagenet", "cifar10", "cifar100", "fashion_mnist", "digits")
FASHION_MNIST_DEBIAN = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                       "t10k-labels-idx1-ubyte")
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# Native size of each small dataset, and whether a mirrored image is still the same class.
_NATIVE = {"cifar10": (32, True), "cifar100": (32, True), "fashion_mnist": (28, True), "digits": (8, False)}


class _RGB:
    """PIL image -> RGB (a class, not a lambda, so DataLoader workers can pickle it)."""

    def __call__(self, image):
        return image.convert("RGB")


class DigitsDataset(Dataset):
    """scikit-learn's handwritten digits as PIL images; ``train`` picks a fixed 1,497 / 300 split."""

    def __init__(self, train, transform=None):
        from sklearn.datasets import load_digits

        digits = load_digits()
        order = np.random.default_rng(0).permutation(len(digits.target))
        keep = order[:1497] if train else order[1497:]
        self.images = (digits.images[keep] * (255.0 / 16.0)).astype(np.uint8)
        self.targets = digits.target[keep].astype(np.int64)
        self.transform = transform

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        image = Image.fromarray(self.images[i], mode="L")
        return (self.transform(image) if self.transform else image), int(self.targets[i])


def _small_transforms(native, image_size, flip):
    resize = [T.Resize(image_size)] if image_size != native else []
    augment = [T.RandomCrop(image_size, padding=max(1, image_size // 8))]
    augment += [T.RandomHorizontalFlip()] if flip else []
    tail = [T.ToTensor(), T.Normalize(MEAN, STD)]
    return T.Compose([_RGB(), *resize, *augment, *tail]), T.Compose([_RGB(), *resize, *tail])


def _imagenet_transforms(image_size):
    train = T.Compose([T.RandomResizedCrop(image_size), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(MEAN, STD)])
    val = T.Compose([T.Resize(int(round(image_size * 256 / 224))), T.CenterCrop(image_size), T.ToTensor(),
                     T.Normalize(MEAN, STD)])
    return train, val


def prepare_fashion_mnist(root, download=False):
    """Make ``ROOT/FashionMNIST/raw`` hold the four unpacked IDX files; return ``root``.

    Taken, in order, from that folder itself, from Debian's package, or from torchvision's
    download. Files are unpacked atomically: an interrupted run leaves no partial file.
    """
    raw = os.path.join(root, "FashionMNIST", "raw")
    missing = [f for f in FASHION_MNIST_FILES if not os.path.isfile(os.path.join(raw, f))]
    if not missing:
        return root
    debian = [os.path.join(FASHION_MNIST_DEBIAN, f + ".gz") for f in missing]
    if all(os.path.isfile(p) for p in debian):
        os.makedirs(raw, exist_ok=True)
        for name, src in zip(missing, debian):
            with gzip.open(src, "rb") as packed:
                atomic_write(os.path.join(raw, name), lambda f, p=packed: shutil.copyfileobj(p, f))
        return root
    if download:
        return root  # torchvision's FashionMNIST(download=True) fetches them
    raise InputError(
        f"Fashion-MNIST is not in {raw} (missing {', '.join(missing)}) and Debian's copy is not installed. "
        f"Install it with `apt-get install dataset-fashion-mnist` (files in {FASHION_MNIST_DEBIAN}), or pass "
        "--download to let torchvision fetch it."
    )


def _check_imagenet(root):
    problems = []
    classes = {}
    for split in ("train", "val"):
        folder = os.path.join(root, split)
        if not os.path.isdir(folder):
            problems.append(f"{folder} does not exist")
            continue
        classes[split] = sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d)))
        if not classes[split]:
            problems.append(f"{folder} has no class folders (expected {folder}/<class>/<image>)")
    if len(classes) == 2 and classes["train"] and classes["train"] != classes["val"]:
        only = sorted(set(classes["train"]) ^ set(classes["val"]))[:5]
        problems.append(f"train and val have different class folders (e.g. {only})")
    if problems:
        raise InputError(f"--data-root {root!r} is not an ImageFolder dataset: " + "; ".join(problems))


def _subset(dataset, limit, seed):
    if not limit or limit >= len(dataset):
        return dataset
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:limit]
    return Subset(dataset, sorted(order.tolist()))


def build_datasets(name, root=None, image_size=None, *, download=False, limit_train=None, limit_val=None, seed=0):
    """``(train, val, num_classes, image_size)`` for dataset ``name`` (see the module docstring).

    ``limit_train``/``limit_val`` keep a fixed random subset (for quick runs and tests).
    """
    if name not in DATASETS:
        raise ConfigError(f"--dataset {name!r} is invalid: choose one of {', '.join(DATASETS)}")
    if name != "digits" and not root:
        raise ConfigError(f"--dataset {name} needs --data-root")
    try:
        if name == "imagenet":
            image_size = image_size or 224
            _check_imagenet(root)
            train_tf, val_tf = _imagenet_transforms(image_size)
            train = tvd.ImageFolder(os.path.join(root, "train"), train_tf)
            val = tvd.ImageFolder(os.path.join(root, "val"), val_tf)
            num_classes = len(train.classes)
        else:
            native, flip = _NATIVE[name]
            image_size = image_size or max(native, 32)
            train_tf, val_tf = _small_transforms(native, image_size, flip)
            if name == "digits":
                train, val, num_classes = DigitsDataset(True, train_tf), DigitsDataset(False, val_tf), 10
            elif name == "fashion_mnist":
                prepare_fashion_mnist(root, download)
                train = tvd.FashionMNIST(root, train=True, transform=train_tf, download=download)
                val = tvd.FashionMNIST(root, train=False, transform=val_tf, download=download)
                num_classes = 10
            else:
                cls = tvd.CIFAR10 if name == "cifar10" else tvd.CIFAR100
                train = cls(root, train=True, transform=train_tf, download=download)
                val = cls(root, train=False, transform=val_tf, download=download)
                num_classes = 10 if name == "cifar10" else 100
    except (RuntimeError, OSError, ValueError) as e:  # torchvision's "Dataset not found or corrupted", bad files
        detail = first_line(e)
        raise InputError(f"cannot read the {name} dataset under {root!r}: {detail}"
                         + ("" if download or name == "imagenet" else " (--download fetches it)")) from None
    return _subset(train, limit_train, seed), _subset(val, limit_val, seed + 1), num_classes, image_size
