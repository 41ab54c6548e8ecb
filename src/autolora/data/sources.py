"""Named data sets, offline first: each loader returns raw train and test splits."""

from __future__ import annotations

import gzip
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from ..registry import Entry, Registry
from .files import GREY_MODES, ImageFiles, as_image_set
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
    stream: bool | None = None  # keep image files on disk; None: when they exceed STREAM_BYTES decoded

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


# --------------------------------------------------------------------------- image files


FILE_SET_SIZE = 224  # torchvision's file-based sets are photographs; read at the model's size, else this


@dataclass(frozen=True)
class FileSet:
    """A torchvision data set of image files: its class, the splits that make train and test, its file list."""

    name: str
    class_name: str
    train: tuple[dict[str, str], ...]
    test: tuple[dict[str, str], ...]
    files: Callable[[object], tuple[list[str], list[int]]]
    description: str


def _listed(paths: str, labels: str) -> Callable[[object], tuple[list[str], list[int]]]:
    return lambda ds: ([str(p) for p in getattr(ds, paths)], list(getattr(ds, labels)))


def _stanford_cars_files(ds: object) -> tuple[list[str], list[int]]:
    return [str(path) for path, _ in ds._samples], [label for _, label in ds._samples]


def _caltech256_files(ds: object) -> tuple[list[str], list[int]]:
    folder = Path(ds.root) / "256_ObjectCategories"
    paths = [str(folder / ds.categories[y] / f"{y + 1:03d}_{i:04d}.jpg") for y, i in zip(ds.y, ds.index, strict=True)]
    return paths, list(ds.y)


FILE_SETS = (
    FileSet("dtd", "DTD", ({"split": "train"}, {"split": "val"}), ({"split": "test"},),
            _listed("_image_files", "_labels"), "Describable Textures, 47 classes, 3,760 train+val / 1,880 test"),
    FileSet("caltech256", "Caltech256", ({},), (), _caltech256_files,
            "Caltech-256, 257 classes (with clutter), 30,607 images, fixed stratified 80/20 split"),
    FileSet("flowers102", "Flowers102", ({"split": "train"}, {"split": "val"}), ({"split": "test"},),
            _listed("_image_files", "_labels"), "Oxford Flowers-102, 102 classes, 2,040 train+val / 6,149 test"),
    FileSet("oxford-pets", "OxfordIIITPet", ({"split": "trainval"},), ({"split": "test"},),
            _listed("_images", "_labels"), "Oxford-IIIT Pets, 37 classes, 3,680 / 3,669"),
    FileSet("fgvc-aircraft", "FGVCAircraft", ({"split": "trainval"},), ({"split": "test"},),
            _listed("_image_files", "_labels"), "FGVC-Aircraft variants, 100 classes, 6,667 / 3,333"),
    FileSet("stanford-cars", "StanfordCars", ({"split": "train"},), ({"split": "test"},), _stanford_cars_files,
            "Stanford Cars, 196 classes, 8,144 / 8,041 (its download link is gone: --data-dir only)"),
    FileSet("food101", "Food101", ({"split": "train"},), ({"split": "test"},),
            _listed("_image_files", "_labels"), "Food-101, 101 classes, 75,750 / 25,250 (streamed from disk)"),
)  # fmt: skip


def _file_set_part(spec: FileSet, splits: tuple[dict[str, str], ...], options: SourceOptions) -> ImageFiles:
    paths: list[str] = []
    labels: list[int] = []
    classes: list[str] = []
    for kwargs in splits:
        ds = _torchvision_dataset(spec.class_name, options, **kwargs)
        more_paths, more_labels = spec.files(ds)
        paths += more_paths
        labels += more_labels
        classes = [str(c) for c in (getattr(ds, "classes", None) or getattr(ds, "categories", None) or [])]
    classes = classes or [str(c) for c in range(max(labels) + 1)]
    return ImageFiles(paths, torch.tensor(labels), classes, options.image_size or FILE_SET_SIZE)


def load_file_set(spec: FileSet, options: SourceOptions) -> DataSplits:
    """A torchvision file-based set as train and test image files (in memory below ``STREAM_BYTES``)."""
    train = _file_set_part(spec, spec.train, options)
    if spec.test:
        test = _file_set_part(spec, spec.test, options)
    else:
        train, test = _fixed_split(train)
    return DataSplits(spec.name, as_image_set(train, options.stream), as_image_set(test, options.stream), augment=True)


def _fixed_split(files: ImageFiles, test_fraction: float = 0.2) -> tuple[ImageFiles, ImageFiles]:
    """A fixed (seed 0) stratified split, for sets published without one."""
    from sklearn.model_selection import train_test_split

    index = np.arange(len(files))
    train, test = train_test_split(index, test_size=test_fraction, stratify=files.labels.numpy(), random_state=0)
    return files.subset(torch.from_numpy(np.sort(train))), files.subset(torch.from_numpy(np.sort(test)))


for _spec in FILE_SETS:
    register_dataset(_spec.name, _spec.description + " (--data-dir, or --download)")(partial(load_file_set, _spec))


def load_image_folder(path: Path, options: SourceOptions) -> DataSplits:
    """Read ``PATH/train/<class>/*`` and ``PATH/test/<class>/*``.

    Images are resized to ``options.image_size`` (the model's input size; 64 if unknown) and kept
    in their own colour mode (grey or RGB, whichever the train folder's first image has). Sets whose
    decoded pixels exceed ``STREAM_BYTES`` stay on disk and are decoded batch by batch.
    """
    for part in ("train", "test"):
        if not (path / part).is_dir():
            raise DataError(f"image folder {path} has no {part}/ subfolder; expected {path}/{part}/<class>/<images>")
    train = _folder_files(path / "train", options.image_size or 64, None)
    test = _folder_files(path / "test", train.size, train)
    train_set, test_set = as_image_set(train, options.stream), as_image_set(test, options.stream)
    return DataSplits(f"imagefolder:{path}", train_set, test_set, augment=True)


def _folder_files(folder: Path, size: int, train: ImageFiles | None) -> ImageFiles:
    """The files of one ``<class>/<image>`` folder; the test folder must have the train folder's classes."""
    from PIL import Image
    from torchvision.datasets import ImageFolder

    try:
        found = ImageFolder(str(folder), loader=lambda path: path)
    except (FileNotFoundError, OSError) as exc:
        raise DataError(f"cannot read image folder {folder}: {exc}") from exc
    if not found.samples:
        raise DataError(f"image folder {folder} holds no images")
    if train is not None and found.classes != train.classes:
        raise DataError(f"{folder} has classes {found.classes}, but the train folder has {train.classes}")
    if train is None:
        try:
            with Image.open(found.samples[0][0]) as first:
                channels = 1 if first.mode in GREY_MODES else 3
        except OSError as exc:
            raise DataError(f"cannot read image {found.samples[0][0]}: {exc}") from exc
    else:
        channels = train.channels
    paths = [file for file, _ in found.samples]
    return ImageFiles(paths, torch.tensor(found.targets), list(found.classes), size, channels)


# --------------------------------------------------------------------------- what is here


def is_present(name: str, options: SourceOptions | None = None) -> bool:
    """Whether the named data set can be loaded without a download."""
    options = replace(options or SourceOptions(), download=False)
    if name == "digits":
        return True
    if name == "fashion-mnist":
        return any(_find_idx(folder, "t10k-images-idx3-ubyte") for folder in _idx_folders(options))
    spec = next((s for s in FILE_SETS if s.name == name), None)
    checks = {"mnist": ("MNIST", {"train": False}), "cifar10": ("CIFAR10", {"train": False}),
              "cifar100": ("CIFAR100", {"train": False}), "svhn": ("SVHN", {"split": "test"}),
              "stl10": ("STL10", {"split": "test"})}  # fmt: skip
    class_name, kwargs = (spec.class_name, (spec.test or spec.train)[0]) if spec else checks.get(name, (None, {}))
    if class_name is None:
        return False
    try:
        _torchvision_dataset(class_name, options, **kwargs)
    except DataError:
        return False
    return True
