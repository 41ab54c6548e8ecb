"""Images per second at 224 px: loading (in memory vs streamed from disk) against a training step.

Writes a folder of synthetic 256x256 JPEGs (smooth random colour fields, so the files compress like
photographs), then measures
- in memory: decoding the whole folder once (DataLoader workers), then an epoch of batches from memory;
- streamed: an epoch of batches decoded, resized and augmented in DataLoader workers;
- an AutoLoRa training step (PGD-K attack, both paths, backward, SGD) of ResNet-50 and ViT-Ti at 224 px.

    python benchmarks/images_224.py [--images 2000] [--batch 64] [--step-batch 8] [--attack-steps 10]

``--no-loading`` times the training steps alone; ``--threads 1`` keeps a step to one core (beside
another job, two threads are several times slower than one: RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from autolora.data import BatchLoader, SourceOptions, load_splits
from autolora.data.files import default_workers
from autolora.inputs import IMAGENET_MEAN, IMAGENET_STD, InputSpec
from autolora.runtime import machine
from training_step import training_step

SPEC = InputSpec(3, 224, IMAGENET_MEAN, IMAGENET_STD)
MODELS = ("resnet50", "timm:vit_tiny_patch16_224")


def write_folder(root: Path, images: int, classes: int = 10) -> None:
    generator = torch.Generator().manual_seed(0)
    for index in range(images):
        part = "test" if (index // classes) % 10 == 0 else "train"
        folder = root / part / f"class{index % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        field = torch.rand(1, 3, 8, 8, generator=generator)
        pixels = F.interpolate(field, size=(256, 256), mode="bicubic", align_corners=False).clamp(0, 1)
        array = (pixels[0].permute(1, 2, 0) * 255).to(torch.uint8).numpy()
        Image.fromarray(array).save(folder / f"{index}.jpg", quality=90)


def epoch_rate(loader: BatchLoader) -> float:
    start, count = time.perf_counter(), 0
    for x, _ in loader.batches(0):
        count += len(x)
    return count / (time.perf_counter() - start)


def loading(root: Path, batch: int) -> dict[str, float]:
    start = time.perf_counter()
    memory = load_splits(f"imagefolder:{root}", SourceOptions(image_size=224, stream=False)).train
    decode = len(memory) / (time.perf_counter() - start)
    streamed = load_splits(f"imagefolder:{root}", SourceOptions(image_size=224, stream=True)).train
    cpu = torch.device("cpu")
    kwargs = dict(shuffle=True, augment=True, seed=0)
    return {
        "train_images": len(memory),
        "workers": streamed.workers,
        "in_memory_decode_once_img_s": round(decode, 1),
        "in_memory_epoch_img_s": round(epoch_rate(BatchLoader(memory, SPEC, batch, cpu, **kwargs)), 1),
        "streamed_epoch_img_s": round(epoch_rate(BatchLoader(streamed, SPEC, batch, cpu, **kwargs)), 1),
    }


def step_rate(model: str, batch: int, attack_steps: int, repeats: int) -> float:
    step = training_step(model, SPEC, "autolora", attack_steps=attack_steps, lr=0.01, channels_last=True)
    x, y = torch.rand(batch, 3, 224, 224), torch.randint(0, 10, (batch,))
    step(x, y)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step(x, y)
        times.append(time.perf_counter() - start)
    return batch / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=64, help="loader batch")
    parser.add_argument("--step-batch", type=int, default=8, help="training-step batch")
    parser.add_argument("--attack-steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=default_workers(), help="torch threads for the steps")
    parser.add_argument("--no-loading", action="store_true", help="time the training steps only")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "images_224.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result: dict = {}
    if not args.no_loading:
        with tempfile.TemporaryDirectory() as folder:
            write_folder(Path(folder), args.images)
            result["loading"] = loading(Path(folder), args.batch)
        print(json.dumps(result["loading"]), flush=True)
    result["training_step_img_s"] = {
        model: round(step_rate(model, args.step_batch, args.attack_steps, args.repeats), 2) for model in MODELS
    }
    result["settings"] = vars(args) | {"out": str(args.out)}
    result["machine"] = machine() | {"load_average_1min_at_end": round(os.getloadavg()[0], 2)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
