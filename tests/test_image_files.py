"""Image files: streaming equals in-memory, the size rule, torchvision file sets from local folders."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from autolora.data import BatchLoader, ImageFiles, ImageSet, SourceOptions, is_present, load_splits
from autolora.data import files as files_module
from autolora.inputs import InputSpec


def _jpegs(folder, names, size=40, seed=0):
    generator = torch.Generator().manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        pixels = torch.randint(0, 256, (size, size + 8, 3), generator=generator, dtype=torch.uint8)
        Image.fromarray(pixels.numpy()).save(folder / name)


@pytest.fixture
def folder(tmp_path):
    for part, count in (("train", 7), ("test", 3)):
        for label in ("cat", "dog"):
            _jpegs(tmp_path / part / label, [f"{i}.jpg" for i in range(count)], seed=count + len(label))
    return tmp_path


def test_streamed_batches_equal_in_memory_batches(folder):
    options = dict(image_size=32)
    memory = load_splits(f"imagefolder:{folder}", SourceOptions(**options, stream=False))
    disk = load_splits(f"imagefolder:{folder}", SourceOptions(**options, stream=True))
    assert isinstance(memory.train, ImageSet) and isinstance(disk.train, ImageFiles)
    disk.train.workers = 2  # decode in worker processes, as for a large set
    spec = InputSpec.plain(3, 32)
    kwargs = dict(shuffle=True, augment=True, seed=3, min_batch=2)
    a = BatchLoader(memory.train, spec, 4, torch.device("cpu"), **kwargs)
    b = BatchLoader(disk.train, spec, 4, torch.device("cpu"), **kwargs)
    assert b.streaming and not a.streaming
    for epoch in (0, 1):
        pairs = list(zip(a.batches(epoch), b.batches(epoch), strict=True))
        assert len(pairs) == 4  # 14 images: 3 batches of 4 and one of 2
        for (xa, ya), (xb, yb) in pairs:
            assert torch.equal(ya, yb) and torch.allclose(xa, xb, atol=1e-6)


def test_sets_stream_above_the_size_limit(folder, monkeypatch):
    assert isinstance(load_splits(f"imagefolder:{folder}", SourceOptions(image_size=32)).train, ImageSet)
    monkeypatch.setattr(files_module, "STREAM_BYTES", 14 * 3 * 32 * 32 - 1)
    splits = load_splits(f"imagefolder:{folder}", SourceOptions(image_size=32))
    assert isinstance(splits.train, ImageFiles) and isinstance(splits.test, ImageSet)  # 6 test images fit


def test_image_files_subset_and_floats(folder):
    files = load_splits(f"imagefolder:{folder}", SourceOptions(image_size=16, stream=True)).train
    part = files.subset(torch.tensor([0, 13]))
    assert part.labels.tolist() == [0, 1] and part.floats().shape == (2, 3, 16, 16)
    assert float(part.floats().min()) >= 0.0 and float(part.floats().max()) <= 1.0
    assert torch.equal(files.load().subset(torch.tensor([0, 13])).floats(), part.floats())


def _fake_dtd(root):
    data = root / "dtd" / "dtd"
    for cls in ("banded", "dotted"):
        _jpegs(data / "images" / cls, [f"{cls}_{i}.jpg" for i in range(3)], size=24)
    (data / "labels").mkdir()
    for split, indices in (("train", [0]), ("val", [1]), ("test", [2])):
        lines = [f"{cls}/{cls}_{i}.jpg" for cls in ("banded", "dotted") for i in indices]
        (data / "labels" / f"{split}1.txt").write_text("\n".join(lines) + "\n")


def test_dtd_from_a_local_folder_joins_train_and_val(tmp_path):
    _fake_dtd(tmp_path)
    options = SourceOptions(tmp_path, image_size=32)
    assert is_present("dtd", options) and not is_present("food101", options)
    splits = load_splits("dtd", options)
    assert len(splits.train) == 4 and len(splits.test) == 2 and splits.train.classes == ["banded", "dotted"]
    assert splits.train.shape == (3, 32, 32) and splits.augment


def test_caltech256_gets_a_fixed_stratified_split(tmp_path):
    categories = tmp_path / "caltech256" / "256_ObjectCategories"
    for y, name in enumerate(("001.ak47", "002.bat")):
        _jpegs(categories / name, [f"{y + 1:03d}_{i:04d}.jpg" for i in range(1, 6)], size=24)
    splits = load_splits("caltech256", SourceOptions(tmp_path, image_size=24))
    assert len(splits.train) == 8 and len(splits.test) == 2
    assert splits.test.class_counts().tolist() == [1, 1]
    again = load_splits("caltech256", SourceOptions(tmp_path, image_size=24))
    assert torch.equal(again.test.floats(), splits.test.floats())


def test_missing_file_set_says_how_to_get_it(tmp_path):
    with pytest.raises(Exception, match="--download"):
        load_splits("flowers102", SourceOptions(tmp_path))


def test_datasets_command_lists_sizes_and_presence(cli, tmp_path):
    _fake_dtd(tmp_path)
    result = cli("datasets", "--data-dir", tmp_path)
    assert result.exit_code == 0
    rows = {
        line.split("│")[1].strip(): line.split("│")[2].strip()
        for line in result.output.splitlines()
        if line.count("│") >= 3
    }
    assert rows["dtd"] == "yes" and rows["food101"] == "no" and rows["digits"] == "yes"
    assert "47 classes" in result.output and "Caltech-256" in result.output
