"""Datasets for pretraining the classifier: a registry, ``DATASETS``, of functions
``NAME(root, image_size, download) -> (train, val, num_classes, image_size)`` built on
torchvision's dataset classes (``image_size`` None: the dataset's own default). Adding a
dataset is registering one such function; its docstring is its entry in
``train_classifier --help`` (and belongs in docs/PRETRAINING.md's table).

Every image becomes 3-channel RGB, normalized with the ImageNet mean and std that
torchvision-style weights assume (the converter tells detection configs the same).
"""
import functools
import gzip
import os
import shutil

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Subset
from torchvision import datasets as tvd
from torchvision import transforms as T

from detectron2.utils.registry import Registry

from ..data.images import open_image
from ..errors import ConfigError, InputError, first_line
from ..utils.fileio import atomic_write

__all__ = ["DATASETS", "build_datasets", "FASHION_MNIST_DEBIAN"]

DATASETS = Registry("CLASSIFICATION_DATASETS")
DATASETS.__doc__ = "train_classifier's --dataset NAME: NAME(root, image_size, download) -> (train, val, classes, size)"
# In 0..1 units (after ToTensor); Detectron2's PIXEL_MEAN / PIXEL_STD hold the same values x 255.
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
FASHION_MNIST_DEBIAN = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                       "t10k-labels-idx1-ubyte")
_TO_TENSOR = [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
_RGB = functools.partial(Image.Image.convert, mode="RGB")  # not a lambda: DataLoader workers can pickle it


class DigitsDataset(Dataset):
    """scikit-learn's handwritten digits as PIL images; ``train`` picks a fixed 1,497 / 300 split."""

    def __init__(self, train, transform):
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
        return self.transform(image), int(self.targets[i])


def _read_rgb(path):
    """ImageFolder's loader: an RGB PIL image, or an InputError naming the file (truncated, not an image)."""
    try:
        return open_image(path, lambda image: image.convert("RGB"))  # one copy (not PIL -> numpy -> PIL)
    except InputError as e:
        raise InputError(f"{e}; replace or remove the file") from None


def _needs_root(root, name):
    if not root:
        raise ConfigError(f"--dataset {name} needs --data-root")
    return root


def _small(native, image_size, flip):
    """(train transform, eval transform, size) for a small dataset of ``native`` pixels: upsampled to
    32 unless ``image_size`` says otherwise, padded random crops, and flips when a mirrored image
    is still of its class."""
    size = image_size or max(native, 32)
    resize = [T.Resize(size)] if size != native else []
    augment = [T.RandomCrop(size, padding=max(1, size // 8))] + ([T.RandomHorizontalFlip()] if flip else [])
    return T.Compose([_RGB, *resize, *augment, *_TO_TENSOR]), T.Compose([_RGB, *resize, *_TO_TENSOR]), size


def _torchvision_small(cls, name, num_classes, native, root, image_size, download):
    train_tf, val_tf, size = _small(native, image_size, flip=True)
    root = _needs_root(root, name)
    try:
        train = cls(root, train=True, transform=train_tf, download=download)
        val = cls(root, train=False, transform=val_tf, download=download)
    except (RuntimeError, OSError, ValueError) as e:  # torchvision's "Dataset not found or corrupted", bad files
        raise InputError(f"cannot read the {name} dataset under {root!r}: {first_line(e)}" +
                         ("" if download else " (--download fetches it)")) from None
    return train, val, num_classes, size


@DATASETS.register()
def imagenet(root, image_size, download):
    """ImageFolder on ROOT/train and ROOT/val (one folder per class, as the usual ImageNet preparation
    scripts leave it); 224 pixels, random-resized crops and flips, resize + center crop for evaluation."""
    _check_imagenet(_needs_root(root, "imagenet"))
    size = image_size or 224
    train_tf = T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip(), *_TO_TENSOR])
    val_tf = T.Compose([T.Resize(int(round(size * 256 / 224))), T.CenterCrop(size), *_TO_TENSOR])
    train = tvd.ImageFolder(os.path.join(root, "train"), train_tf, loader=_read_rgb)
    val = tvd.ImageFolder(os.path.join(root, "val"), val_tf, loader=_read_rgb)
    return train, val, len(train.classes), size


@DATASETS.register()
def cifar10(root, image_size, download):
    """torchvision's CIFAR10 under ROOT (--download fetches it); 32 pixels."""
    return _torchvision_small(tvd.CIFAR10, "cifar10", 10, 32, root, image_size, download)


@DATASETS.register()
def cifar100(root, image_size, download):
    """torchvision's CIFAR100 under ROOT (--download fetches it); 32 pixels."""
    return _torchvision_small(tvd.CIFAR100, "cifar100", 100, 32, root, image_size, download)


@DATASETS.register()
def fashion_mnist(root, image_size, download):
    """torchvision's FashionMNIST under ROOT, unpacked once from Debian's dataset-fashion-mnist
    (/usr/share/datasets/fashion-mnist) or fetched with --download; 28 pixels, upsampled to 32."""
    prepare_fashion_mnist(_needs_root(root, "fashion_mnist"), download)
    return _torchvision_small(tvd.FashionMNIST, "fashion_mnist", 10, 28, root, image_size, download)


@DATASETS.register()
def digits(root, image_size, download):
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images, nothing to download, no --data-root):
    1,497 for training, 300 held out; upsampled to 32 pixels, no flips (a mirrored digit is another)."""
    train_tf, val_tf, size = _small(8, image_size, flip=False)
    return DigitsDataset(True, train_tf), DigitsDataset(False, val_tf), 10, size


def prepare_fashion_mnist(root, download):
    """Make ``ROOT/FashionMNIST/raw`` hold the four unpacked IDX files, each whole.

    Taken, in order, from that folder itself, from Debian's package, or from torchvision's
    download. Files are unpacked atomically: an interrupted run leaves no partial file. A
    truncated file is named (torchvision would fail on it without saying which, and never
    fetches a file that exists).
    """
    raw = os.path.join(root, "FashionMNIST", "raw")
    missing = [f for f in FASHION_MNIST_FILES if not os.path.isfile(os.path.join(raw, f))]
    debian = [os.path.join(FASHION_MNIST_DEBIAN, f + ".gz") for f in missing]
    if missing and all(os.path.isfile(p) for p in debian):
        os.makedirs(raw, exist_ok=True)
        for name, src in zip(missing, debian):
            with gzip.open(src, "rb") as packed:
                atomic_write(os.path.join(raw, name), lambda f, p=packed: shutil.copyfileobj(p, f))
        missing = []
    if missing and not download:
        raise InputError(
            f"Fashion-MNIST is not in {raw} (missing {', '.join(missing)}) and Debian's copy is not installed. "
            f"Install it with `apt-get install dataset-fashion-mnist` (files in {FASHION_MNIST_DEBIAN}), or pass "
            "--download to let torchvision fetch it.")
    for name in set(FASHION_MNIST_FILES) - set(missing):  # the missing ones torchvision's download fetches
        _check_idx(os.path.join(raw, name))


def _check_idx(path):
    """An InputError naming ``path`` unless it is a whole IDX file of bytes (header: 0, 0, 8, ndim, dims)."""
    with open(path, "rb") as f:
        head = f.read(4)
        ndim = head[3] if len(head) == 4 and head[:3] == b"\x00\x00\x08" else 0
        dims = f.read(4 * ndim)
        dims = np.frombuffer(dims[:len(dims) // 4 * 4], ">u4")  # a file cut inside its header has fewer
    expected = 4 + 4 * ndim + int(np.prod(dims)) if ndim and len(dims) == ndim else None
    actual = os.path.getsize(path)
    if actual != expected:
        raise InputError(f"{path} is truncated or not a Fashion-MNIST file ({actual} bytes" +
                         (f"; its header says {expected}" if expected else "") + "): delete it, and the next run "
                         "unpacks it again from Debian's package (or fetches it with --download)")


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
    """``(train, val, num_classes, image_size)`` for the registered dataset ``name`` (see ``DATASETS``).

    ``limit_train``/``limit_val`` keep a fixed random subset (for quick runs and tests).
    """
    if name not in DATASETS:
        raise ConfigError(f"--dataset {name!r} is invalid: choose one of {', '.join(n for n, _ in DATASETS)}")
    train, val, num_classes, image_size = DATASETS.get(name)(root, image_size, download)
    return _subset(train, limit_train, seed), _subset(val, limit_val, seed + 1), num_classes, image_size
