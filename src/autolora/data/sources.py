"""Named data sets, offline first: each loader returns raw train and test splits."""

from __future__ import annotations

import gzip
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from ..registry import Entry, Registry
from .images import DataSplits, ImageSet

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = [
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle-boot",
]


@dataclass(frozen=True)
class SourceOptions:
    """Where data may come from: a local folder, and whether downloading is allowed."""

    data_dir: Path | None = None
    download: bool = False
    image_size: int | None = None  # for image folders, whose files differ in size

    @property
    def root(self) -> Path:
        if self.data_dir is not None:
            return Path(self.data_dir)
        return Path(os.environ.get("AUTOLORA_DATA", Path.home() / ".cache" / "autolora" / "data"))


Loader = Callable[[SourceOptions], DataSplits]
DATASETS: Registry[Loader] = Registry()
register_dataset = DATASETS.register  # a decorator: @register_dataset(name, description)


def list_datasets() -> list[Entry[Loader]]:
    return DATASETS.entries()


def load_splits(name: str, options: SourceOptions | None = None) -> DataSplits:
    """Load the named data set's train and test splits (``imagefolder:PATH`` for a folder)."""
    options = options or SourceOptions()
    if name.startswith("imagefolder:"):
        return load_image_folder(Path(name.split(":", 1)[1]), options)
    if name not in DATASETS:
        known = ", ".join(sorted(DATASETS.names()) + ["imagefolder:PATH"])
        raise DataError(f"unknown dataset {name!r}; choose one of: {known}")
    return DATASETS[name](options)


# --------------------------------------------------------------------------- IDX (Fashion-MNIST)


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped), the format of (Fashion-)MNIST."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
        zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
        if zero != 0 or dtype_code != 0x08:
            raise DataError(f"{path} is not an unsigned-byte IDX file")
        dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
        data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
        return data.reshape(dims)
    except (OSError, EOFError, struct.error, ValueError) as exc:
        raise DataError(f"cannot read IDX file {path}: {exc}") from exc


def _find_idx(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    return None


def _idx_folders(options: SourceOptions) -> list[Path]:
    root = options.root
    folders = [root, root / "fashion-mnist", root / "FashionMNIST" / "raw"]
    if options.data_dir is None:
        folders.insert(0, DEBIAN_FASHION_MNIST)
    return folders


def _idx_split(folder: Path, prefix: str) -> ImageSet | None:
    images = _find_idx(folder, f"{prefix}-images-idx3-ubyte")
    labels = _find_idx(folder, f"{prefix}-labels-idx1-ubyte")
    if images is None or labels is None:
        return None
    pixels = torch.from_numpy(read_idx(images).copy()).unsqueeze(1)
    targets = torch.from_numpy(read_idx(labels).astype(np.int64))
    return ImageSet(pixels, targets, list(FASHION_MNIST_CLASSES))


@register_dataset(
    "fashion-mnist", "Fashion-MNIST, 28x28 grey, 10 classes, 60k/10k (offline: Debian dataset-fashion-mnist)"
)
def load_fashion_mnist(options: SourceOptions) -> DataSplits:
    if options.download:
        _torchvision_dataset("FashionMNIST", options, train=True)
    for folder in _idx_folders(options):
        train, test = _idx_split(folder, "train"), _idx_split(folder, "t10k")
        if train is not None and test is not None:
            return DataSplits("fashion-mnist", train, test)
    searched = ", ".join(str(f) for f in _idx_folders(options))
    raise DataError(
        f"Fashion-MNIST not found (looked in {searched}); install it with "
        "`apt-get install dataset-fashion-mnist`, point --data-dir at a folder holding its idx files, "
        "or pass --download"
    )


# --------------------------------------------------------------------------- scikit-learn digits


@register_dataset("digits", "scikit-learn's bundled 8x8 digits, 1,797 real images, 10 classes, fixed 80/20 split")
def load_digits(options: SourceOptions) -> DataSplits:
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    bunch = sklearn_digits()
    pixels = torch.from_numpy(bunch.images.astype(np.float32) / 16.0).unsqueeze(1)
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    train_idx, test_idx = train_test_split(np.arange(len(labels)), test_size=0.2, stratify=bunch.target, random_state=0)
    classes = [str(c) for c in range(10)]
    train = ImageSet(pixels[train_idx], labels[train_idx], classes)
    test = ImageSet(pixels[test_idx], labels[test_idx], classes)
    return DataSplits("digits", train, test)


# --------------------------------------------------------------------------- torchvision data sets


def _torchvision_dataset(class_name: str, options: SourceOptions, **kwargs: object) -> object:
    import torchvision.datasets as tvd

    root = options.root
    try:
        return getattr(tvd, class_name)(root=str(root), download=options.download, **kwargs)
    except RuntimeError as exc:
        if options.download:
            raise DataError(f"could not download {class_name} into {root}: {exc}") from exc
        raise DataError(
            f"{class_name} not found under {root}; pass --data-dir pointing at a folder that holds it, "
            "or --download to fetch it (needs network)"
        ) from exc
    except OSError as exc:
        raise DataError(f"could not read {class_name} under {root}: {exc}") from exc


def _as_nchw(data: np.ndarray | torch.Tensor, layout: str) -> torch.Tensor:
    tensor = torch.as_tensor(np.asarray(data))
    if layout == "NHW":
        return tensor.unsqueeze(1).contiguous()
    if layout == "NHWC":
        return tensor.permute(0, 3, 1, 2).contiguous()
    return tensor.contiguous()


def _torchvision_splits(
    name: str, class_name: str, layout: str, options: SourceOptions, train_kw: dict, test_kw: dict, augment: bool
) -> DataSplits:
    parts = []
    for kwargs in (train_kw, test_kw):
        ds = _torchvision_dataset(class_name, options, **kwargs)
        targets = getattr(ds, "targets", None)
        if targets is None:
            targets = ds.labels
        classes = [str(c) for c in getattr(ds, "classes", [])]
        pixels = _as_nchw(ds.data, layout)
        parts.append(ImageSet(pixels, torch.as_tensor(np.asarray(targets), dtype=torch.long), classes))
    return DataSplits(name, parts[0], parts[1], augment=augment)


@register_dataset("mnist", "MNIST through torchvision (--data-dir, or --download)")
def load_mnist(options: SourceOptions) -> DataSplits:
    return _torchvision_splits("mnist", "MNIST", "NHW", options, {"train": True}, {"train": False}, False)


@register_dataset("cifar10", "CIFAR-10 through torchvision (--data-dir, or --download)")
def load_cifar10(options: SourceOptions) -> DataSplits:
    return _torchvision_splits("cifar10", "CIFAR10", "NHWC", options, {"train": True}, {"train": False}, True)


@register_dataset("cifar100", "CIFAR-100 through torchvision (--data-dir, or --download)")
def load_cifar100(options: SourceOptions) -> DataSplits:
    return _torchvision_splits("cifar100", "CIFAR100", "NHWC", options, {"train": True}, {"train": False}, True)


@register_dataset("svhn", "SVHN (cropped digits) through torchvision (--data-dir, or --download)")
def load_svhn(options: SourceOptions) -> DataSplits:
    return _torchvision_splits("svhn", "SVHN", "NCHW", options, {"split": "train"}, {"split": "test"}, False)


@register_dataset("stl10", "STL-10 (labelled part, 96x96) through torchvision (--data-dir, or --download)")
def load_stl10(options: SourceOptions) -> DataSplits:
    return _torchvision_splits("stl10", "STL10", "NCHW", options, {"split": "train"}, {"split": "test"}, True)


# --------------------------------------------------------------------------- image folders


def load_image_folder(path: Path, options: SourceOptions) -> DataSplits:
    """Read ``PATH/train/<class>/*`` and ``PATH/test/<class>/*`` into memory.

    Images are resized to ``options.image_size`` (the model's input size; 64 if unknown)
    and kept in their own colour mode (grey or RGB, whichever the train folder's first image has).
    """
    from torchvision.datasets import ImageFolder
    from torchvision.transforms import functional as TF

    for part in ("train", "test"):
        if not (path / part).is_dir():
            raise DataError(f"image folder {path} has no {part}/ subfolder; expected {path}/{part}/<class>/<images>")
    size = options.image_size or 64
    parts: list[ImageSet] = []
    mode: str | None = None
    classes: list[str] | None = None
    for part in ("train", "test"):
        try:
            folder = ImageFolder(str(path / part))
        except (FileNotFoundError, OSError) as exc:
            raise DataError(f"cannot read image folder {path / part}: {exc}") from exc
        if classes is not None and folder.classes != classes:
            raise DataError(f"{path}/test has classes {folder.classes}, but {path}/train has {classes}")
        classes = folder.classes
        images = []
        for file, _ in folder.samples:
            try:
                image = folder.loader(file)
            except OSError as exc:
                raise DataError(f"cannot read image {file}: {exc}") from exc
            mode = mode or ("L" if image.mode in ("L", "1", "I;16", "I") else "RGB")
            image = TF.resize(image.convert(mode), [size, size], antialias=True)
            images.append(TF.pil_to_tensor(image))
        if not images:
            raise DataError(f"image folder {path / part} holds no images")
        parts.append(ImageSet(torch.stack(images), torch.tensor(folder.targets), list(classes)))
    return DataSplits(f"imagefolder:{path}", parts[0], parts[1], augment=True)
