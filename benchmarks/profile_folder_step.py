"""Where a folder training step of resnet18 spends its time (issue 19): the DataLoader
workers' work per image, convnet's against timm's, and the training process's phases.

1. Per image, in this process on one thread, each on the same JPEGs (500×375, as
   benchmarks/folder_train_speed.py writes them), alternating over --rounds: convnet's
   decoding (`decode_image`, EXIF orientation and any pixel mode), the float round trip it
   took before opaque images skipped it (`pixel_values` → uint8), timm's (`Image.open(f)
   .convert("RGB")`), and each one's training transform (random resized crop 224, flip,
   tensor, normalise; timm's from `timm.data.create_transform`).
2. One epoch of the engine's own `fit` on the folder under torch.profiler, as
   benchmarks/profile_epoch.py does for lenet5: the named phases of the loop (data: the batch
   to the device and layout; forward; backward; optimizer), and "other", which includes
   waiting for the workers' next batch.

Run: `python benchmarks/profile_folder_step.py [--steps 6] [--threads N]`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).parent))

from common import hardware, hardware_line, save_results  # noqa: E402
from folder_train_speed import write_training_folder  # noqa: E402

from convnet.data.images import oriented, pixel_values  # noqa: E402
from convnet.data.preparation import decode_image, training_transform  # noqa: E402
from convnet.engine.config import TrainConfig  # noqa: E402
from convnet.engine.run import Run  # noqa: E402
from convnet.engine.train import fit  # noqa: E402

PHASES = ("data", "forward", "backward", "optimizer")
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # ImageNet's, as both use


def float_round_trip(path: Path) -> Image.Image:
    """How convnet decoded an opaque JPEG before: to floats in [0, 1] and back to bytes."""
    with Image.open(path) as image:
        image.load()
        rgb, _ = pixel_values(oriented(image))
    return Image.fromarray(np.round(rgb * 255).astype(np.uint8), "RGB")


def per_image(files: list[Path], rounds: int) -> dict[str, float]:
    """Milliseconds per image of each way of decoding and transforming (medians of rounds)."""
    import timm.data

    ours = training_transform(224, MEAN, STD)
    theirs = timm.data.create_transform(
        224, is_training=True, color_jitter=0, interpolation="bilinear", mean=MEAN, std=STD
    )
    decoded = [decode_image(path) for path in files]
    ways = {
        "convnet decode": lambda: [decode_image(path) for path in files],
        "convnet decode before (float round trip)": lambda: [float_round_trip(p) for p in files],
        "timm decode": lambda: [Image.open(path).convert("RGB") for path in files],
        "convnet transform": lambda: [ours(image) for image in decoded],
        "timm transform": lambda: [theirs(image) for image in decoded],
    }
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(rounds):
        for name, way in ways.items():
            started = time.perf_counter()
            way()
            times[name].append((time.perf_counter() - started) / len(files) * 1000)
    return {name: round(statistics.median(values), 3) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6, help="training steps profiled")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--rounds", type=int, default=3, help="alternations of part 1")
    options = parser.parse_args()
    facts = hardware()
    print(f"# A folder training step, profiled — {hardware_line(facts)}", flush=True)
    with tempfile.TemporaryDirectory(prefix="convnet-profile-folder-") as scratch:
        data = write_training_folder(Path(scratch), options.steps * options.batch_size, 16)
        files = sorted((data / "train").rglob("*.JPEG"))[:64]
        torch.set_num_threads(1)  # as in a DataLoader worker
        costs = per_image(files, options.rounds)
        print(f"per image, one thread ({len(files)} images, medians of {options.rounds}):")
        for name, milliseconds in costs.items():
            print(f"  {name:<42} {milliseconds:6.2f} ms")
        torch.set_num_threads(options.threads)
        config = TrainConfig(
            model="resnet18",
            data=str(data),
            epochs=1,
            batch_size=options.batch_size,
            workers=options.workers,
            out=f"{scratch}/profiled",
        )
        with profile(activities=[ProfilerActivity.CPU]) as profiler:
            result = fit(config, log=lambda message: None)
        wall = Run(result["run_dir"]).history()[0]["epoch_seconds"]
    phases = {e.key: e.cpu_time_total / 1e6 for e in profiler.key_averages() if e.key in PHASES}
    other = wall - sum(phases.values())
    images = options.steps * options.batch_size
    print(
        f"training process: {wall:.2f} s for {options.steps} steps of {options.batch_size} "
        f"({images / wall:.2f} images/s under the profiler), {result['precision']}, "
        f"{options.threads} thread(s), {options.workers} workers"
    )
    for name in PHASES:
        print(f"  {name:<10} {phases.get(name, 0.0):7.2f} s  {phases.get(name, 0.0) / wall:6.1%}")
    print(
        f"  {'other':<10} {other:7.2f} s  {other / wall:6.1%}  (waiting for workers, bookkeeping)"
    )
    worker_seconds = (costs["convnet decode"] + costs["convnet transform"]) * images / 1000
    print(
        f"the workers' decoding and transforms: {worker_seconds:.2f} CPU-seconds for the "
        f"{images} images, on the same cores"
    )
    path = save_results(
        __file__,
        {
            "per_image_ms": costs,
            "threads": options.threads,
            "workers": options.workers,
            "batch_size": options.batch_size,
            "steps": options.steps,
            "precision": result["precision"],
            "epoch_seconds": wall,
            "phase_seconds": phases,
            "other_seconds": other,
            "worker_cpu_seconds": worker_seconds,
        },
    )
    print(f"# saved {path.name}")


if __name__ == "__main__":
    main()
