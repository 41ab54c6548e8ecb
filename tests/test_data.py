"""Offline data sets, class subsets, limits, splits, input adaptation and batches."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch

from autolora.data import (
    BatchLoader,
    DataConfig,
    ImageSet,
    InputAdapter,
    Shard,
    SourceOptions,
    limit,
    load_splits,
    parse_classes,
    prepare_data,
    select_classes,
    split_validation,
)
from autolora.errors import ConfigError, DataError
from autolora.inputs import InputSpec

from .helpers import needs_fashion_mnist, random_images


@needs_fashion_mnist
def test_fashion_mnist_loads_offline_from_debian_package():
    splits = load_splits("fashion-mnist")
    assert splits.train.pixels.shape == (60000, 1, 28, 28)
    assert splits.test.pixels.shape == (10000, 1, 28, 28)
    assert splits.train.pixels.dtype == torch.uint8
    assert splits.train.class_counts().tolist() == [6000] * 10
    assert splits.train.classes[0] == "t-shirt"
    x = splits.train.floats(slice(0, 8))
    assert x.min() >= 0.0 and x.max() <= 1.0


def _write_idx(path, array: np.ndarray) -> None:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def test_fashion_mnist_reads_idx_files_from_data_dir(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 20), ("t10k", 10)):
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 255, (n, 28, 28)))
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    splits = load_splits("fashion-mnist", SourceOptions(data_dir=tmp_path))
    assert len(splits.train) == 20 and len(splits.test) == 10
    assert splits.train.labels.tolist()[:3] == [0, 1, 2]


def test_missing_fashion_mnist_says_how_to_get_it(tmp_path):
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        load_splits("fashion-mnist", SourceOptions(data_dir=tmp_path))


def test_torchvision_dataset_without_download_explains(tmp_path):
    with pytest.raises(DataError, match="--download"):
        load_splits("cifar10", SourceOptions(data_dir=tmp_path))


def test_digits_fixed_stratified_split():
    a, b = load_splits("digits"), load_splits("digits")
    assert len(a.train) + len(a.test) == 1797
    assert len(a.test) == 360
    assert torch.equal(a.test.labels, b.test.labels)
    counts = a.test.class_counts()
    assert counts.min() >= 35 and counts.max() <= 37
    assert a.train.pixels.shape[1:] == (1, 8, 8)
    assert a.train.pixels.min() >= 0.0 and a.train.pixels.max() <= 1.0


def test_unknown_dataset_lists_known_ones():
    with pytest.raises(DataError, match="fashion-mnist.*digits|digits.*fashion-mnist"):
        load_splits("imagenet-42")


@pytest.mark.parametrize(("text", "expected"), [("0-4", [0, 1, 2, 3, 4]), ("5,7,9", [5, 7, 9]), ("0-1,7", [0, 1, 7])])
def test_parse_classes(text, expected):
    assert parse_classes(text) == expected


@pytest.mark.parametrize("text", ["a-b", "4-2", "3", "1,1", "-1,2"])
def test_parse_classes_refuses_bad_text(text):
    with pytest.raises(ConfigError, match="classes"):
        parse_classes(text)


def test_select_classes_relabels_in_order():
    images = random_images(40)
    subset = select_classes(images, [7, 2])
    assert set(subset.labels.tolist()) == {0, 1}
    assert subset.classes == ["7", "2"]
    assert len(subset) == 8
    original = images.labels[torch.isin(images.labels, torch.tensor([7, 2]))]
    assert ((original == 7) == (subset.labels == 0)).all()


def test_select_classes_refuses_missing_class():
    with pytest.raises(ConfigError, match="classes 0-9"):
        select_classes(random_images(20), [3, 12])


def test_missing_classes_are_named_as_ranges():
    with pytest.raises(ConfigError, match=r"classes='10-99,120' is invalid"):
        select_classes(random_images(20), [*range(100), 120])


def test_limit_is_seeded_and_stratified():
    images = random_images(200)
    a, b, c = limit(images, 50, seed=1), limit(images, 50, seed=1), limit(images, 50, seed=2)
    assert torch.equal(a.pixels, b.pixels)
    assert not torch.equal(a.pixels, c.pixels)
    assert a.class_counts().tolist() == [5] * 10
    assert limit(images, None, 0) is images
    with pytest.raises(ConfigError, match="limit"):
        limit(images, 0, 0)


def test_validation_split_holds_out_at_least_the_minimum():
    images = random_images(1000)
    train, val = split_validation(images, fraction=0.05, minimum=100, seed=0)
    assert len(val) == 100 and len(train) == 900
    train2, val2 = split_validation(images, fraction=0.2, minimum=100, seed=0)
    assert len(val2) == 200
    small_train, small_val = split_validation(random_images(60), 0.05, 100, 0)
    assert len(small_val) == 30 and len(small_train) == 30


def test_prepare_data_applies_subset_then_limits_then_split():
    data = prepare_data(DataConfig("digits", classes="0-4", limit_train=300, limit_test=50, seed=3))
    assert data.num_classes == 5
    assert data.sizes() == {"train": 200, "val": 100, "test": 50}
    assert set(data.test.labels.tolist()) <= set(range(5))


def test_data_config_validates_at_construction():
    with pytest.raises(ConfigError, match="limit-train"):
        DataConfig("digits", limit_train=0)
    with pytest.raises(ConfigError, match="classes"):
        DataConfig("digits", classes="x")


def test_digits_adapt_to_a_fashion_mnist_model():
    spec = InputSpec(1, 28, (0.3,), (0.35,))
    adapter = InputAdapter((1, 8, 8), spec)
    x = adapter(torch.rand(4, 1, 8, 8))
    assert x.shape == (4, 1, 28, 28)
    assert x.min() >= 0.0 and x.max() <= 1.0


def test_grey_becomes_rgb_by_repetition_and_rgb_becomes_grey():
    to_rgb = InputAdapter((1, 32, 32), InputSpec.plain(3, 32))
    x = torch.rand(2, 1, 32, 32)
    y = to_rgb(x)
    assert y.shape == (2, 3, 32, 32) and torch.equal(y[:, 0], y[:, 2]) and torch.equal(y[:, 1], x[:, 0])
    to_grey = InputAdapter((3, 32, 32), InputSpec.plain(1, 32))
    assert to_grey(torch.ones(2, 3, 32, 32)).allclose(torch.ones(2, 1, 32, 32))


def test_adaptation_refuses_impossible_shapes():
    with pytest.raises(DataError, match="cannot be adapted"):
        InputAdapter((1, 8, 8), InputSpec.plain(3, 224))
    with pytest.raises(DataError, match="channels"):
        InputAdapter((4, 32, 32), InputSpec.plain(3, 32))


def test_batches_are_deterministic_per_epoch_and_sharded():
    images = random_images(50)
    spec = InputSpec.plain(1, 28)
    loader = BatchLoader(images, spec, 16, torch.device("cpu"), shuffle=True, augment=True, seed=5)
    first = [y for _, y in loader.batches(3)]
    again = [y for _, y in loader.batches(3)]
    other = [y for _, y in loader.batches(4)]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))
    assert sorted(torch.cat(first).tolist()) == sorted(images.labels.tolist())

    # two processes each take a contiguous half of every global batch, augmented as one process would
    def loader(**kwargs):
        return BatchLoader(images, spec, 16, torch.device("cpu"), shuffle=True, augment=True, seed=5, **kwargs)

    halves = [list(loader(shard=Shard(rank, 2)).batches(3)) for rank in (0, 1)]
    for (x0, y0), (x1, y1), (x, y) in zip(*halves, loader().batches(3), strict=True):
        assert torch.equal(torch.cat([y0, y1]), y) and torch.equal(torch.cat([x0, x1]), x)
    assert [len(y) for _, y in loader(min_batch=4).batches(0)] == [16, 16, 16]  # the last 2 images are too few


def test_image_folder(tmp_path):
    from PIL import Image

    for part in ("train", "test"):
        for name in ("cat", "dog"):
            folder = tmp_path / part / name
            folder.mkdir(parents=True)
            for i in range(3):
                Image.fromarray(np.full((40, 30, 3), 50 * i, dtype=np.uint8)).save(folder / f"{i}.png")
    splits = load_splits(f"imagefolder:{tmp_path}", SourceOptions(image_size=32))
    assert splits.train.pixels.shape == (6, 3, 32, 32)
    assert splits.train.classes == ["cat", "dog"]
    with pytest.raises(DataError, match="no train/ subfolder"):
        load_splits(f"imagefolder:{tmp_path / 'nowhere'}")


def test_image_set_checks_shapes():
    with pytest.raises(ValueError, match="labels"):
        ImageSet(torch.zeros(3, 1, 8, 8), torch.zeros(2))
