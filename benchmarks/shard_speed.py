"""Training from tar shards against training from the image folder they were written from
(issue 32): images/s of one epoch on the same 10,000 JPEGs, with the page cache warm and
cold.

The script writes an ImageNet-like folder (500×375 JPEGs, quality 90, 10 classes: train/
and a small val/, `folder_eval_speed.write_photos`), writes it as shards with `convnet data
shard` (timed too), then trains one epoch from each, a whole command as a user runs it:

    convnet train lenet5 --data DATA|SHARDS --epochs 1 --batch-size 64 --image-size 32 \\
        --workers 2 --threads 1 --precision fp32

A model this small makes reading and decoding the images the whole cost of a step (resnet18
on this CPU trains ~20 images/s whatever feeds it), so the figures compare the two ways of
reading. images/s: the epoch's training images over its seconds (metrics.csv), which include
starting the decoding processes and, for shards, checking each shard's SHA-256 before its
first read.

Warm: every file of the source read once just before the run. Cold: the page cache dropped
just before (`sync; echo 3 > /proc/sys/vm/drop_caches`, which needs root; otherwise each of
the source's files is evicted with posix_fadvise(DONTNEED), which needs no privilege; the
JSON says which). On a virtual machine the host may still cache the disk, so "cold" is cold
for this machine's kernel. Runs alternate between the sources, round by round.

Run: `python benchmarks/shard_speed.py [--images 10000] [--rounds 2] [--work DIR]`.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import hardware, hardware_line, load_average, save_results  # noqa: E402
from folder_train_speed import thread_environment, write_training_folder  # noqa: E402

SOURCES = ("folder", "shards")
CACHES = ("warm", "cold")
READ_CHUNK = 2**20


def files_of(path: Path) -> list[Path]:
    return sorted(file for file in path.rglob("*") if file.is_file())


def warm(path: Path) -> None:
    """Read every file under `path` once, so the page cache holds it."""
    for file in files_of(path):
        with file.open("rb") as handle:
            while handle.read(READ_CHUNK):
                pass


def drop_cache(path: Path) -> str:
    """Empty the page cache (root), else evict `path`'s files from it; returns how."""
    subprocess.run(["sync"], check=True)
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return "drop_caches"
    except OSError:
        for file in files_of(path):
            descriptor = os.open(file, os.O_RDONLY)
            try:
                os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(descriptor)
        return "posix_fadvise"


def run(command: list[str], environment: dict, cwd: Path) -> tuple[str, float]:
    """A whole command: what it printed, and its wall seconds."""
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=environment, cwd=cwd)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout, time.perf_counter() - started


def train(data: Path, out: Path, options: argparse.Namespace, environment: dict) -> dict:
    """One epoch from `data`; its images/s as metrics.csv and steps.csv give them."""
    command = [
        sys.executable, "-m", "convnet", "train", "lenet5", "--data", str(data),
        "--epochs", "1", "--batch-size", str(options.batch_size), "--image-size", "32",
        "--workers", str(options.workers), "--threads", "1", "--precision", "fp32",
        "--device", "cpu", "--out", str(out), "--json",
    ]  # fmt: skip
    load_before = load_average()
    printed, wall = run(command, environment, out.parent)
    with (out / "metrics.csv").open() as handle:
        row = next(csv.DictReader(handle))
    with (out / "steps.csv").open() as handle:
        speeds = [float(step["images_per_second"]) for step in csv.DictReader(handle)]
    step_seconds = [options.batch_size / speed for speed in speeds[1:]]
    result = json.loads(printed)
    shutil.rmtree(out)
    return {
        "images_per_second": float(row["images_per_second"]),
        "epoch_seconds": float(row["epoch_seconds"]),
        "steps_after_the_first_images_per_second": round(
            len(step_seconds) * options.batch_size / sum(step_seconds), 1
        ),
        "wall_seconds": round(wall, 1),
        "top1_error": result["top1_error"],
        "load_average": [load_before, load_average()],
    }


def arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000, help="training JPEGs")
    parser.add_argument("--val-images", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2, help="decoding processes")
    parser.add_argument("--shard-size", default="256MB", help="convnet data shard --shard-size")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each, alternating")
    parser.add_argument("--work", metavar="DIR", help="keep the images here (default: temporary)")
    return parser


def main() -> int:
    options = arguments().parse_args()
    if min(options.images, options.val_images, options.batch_size, options.rounds) < 1:
        print("--images, --val-images, --batch-size and --rounds must be ≥ 1.", file=sys.stderr)
        return 2
    facts = hardware()
    print(f"# shard training speed — {hardware_line(facts)}", flush=True)
    environment = thread_environment(1)
    scratch = Path(options.work or tempfile.mkdtemp(prefix="convnet-shard-speed-"))
    scratch.mkdir(parents=True, exist_ok=True)
    data, shards = scratch / "data", scratch / "shards"
    if not data.is_dir():
        write_training_folder(scratch, options.images, options.val_images)
    if not shards.is_dir():
        command = [sys.executable, "-m", "convnet", "data", "shard", str(data), "--out",
                   str(shards), "--shard-size", options.shard_size, "--json"]  # fmt: skip
        drop_cache(data)
        printed, sharding_seconds = run(command, environment, scratch)
        print(f"sharding: {sharding_seconds:.1f} s from a cold cache", flush=True)
    else:
        sharding_seconds = None
    manifest = json.loads((shards / "manifest.json").read_text())
    sizes = {source: sum(f.stat().st_size for f in files_of(path))
             for source, path in (("folder", data / "train"), ("shards", shards))}  # fmt: skip
    runs: dict[str, list[dict]] = {f"{s} {c}": [] for s in SOURCES for c in CACHES}
    methods = set()
    for round_index in range(options.rounds):
        order = SOURCES if round_index % 2 == 0 else SOURCES[::-1]
        for cache in CACHES:
            for source in order:
                path = data if source == "folder" else shards
                if cache == "warm":
                    warm(path)
                else:
                    methods.add(drop_cache(path))
                row = train(path, scratch / "run", options, environment)
                runs[f"{source} {cache}"].append(row)
                print(
                    f"round {round_index + 1}, {source}, {cache} cache: "
                    f"{row['images_per_second']:,.1f} images/s "
                    f"(load average {row['load_average'][0]} → {row['load_average'][1]})",
                    flush=True,
                )
    medians = {
        key: statistics.median(row["images_per_second"] for row in rows)
        for key, rows in runs.items()
    }
    ratios = {cache: round(medians[f"shards {cache}"] / medians[f"folder {cache}"], 3)
              for cache in CACHES}  # fmt: skip
    for cache in CACHES:
        print(
            f"{cache} cache: shards {medians[f'shards {cache}']:,.1f} images/s, folder "
            f"{medians[f'folder {cache}']:,.1f} images/s: {ratios[cache]:.2f}×"
        )
    mount = next(
        (line.split()[:3] for line in Path("/proc/mounts").read_text().splitlines()
         if line.split()[1] == "/"), None,
    )  # fmt: skip
    path = save_results(
        __file__,
        {
            "data": {
                "train_images": options.images,
                "val_images": options.val_images,
                "classes": 10,
                "image_size": [500, 375],
                "format": "JPEG q90",
                "folder_bytes": sizes["folder"],
                "shards": len(manifest["splits"]["train"]["shards"]),
                "shard_bytes": sizes["shards"],
                "shard_size": options.shard_size,
                "storage": mount,
            },
            "recipe": {
                "model": "lenet5",
                "image_size": 32,
                "batch_size": options.batch_size,
                "workers": options.workers,
                "threads": 1,
                "precision": "fp32",
                "epochs": 1,
            },
            "cache_drop": {
                "method": sorted(methods),
                "root": os.geteuid() == 0 if hasattr(os, "geteuid") else None,
                "note": "drop_caches empties this machine's page cache (root only); "
                "posix_fadvise evicts the source's files (any user). A virtual machine's "
                "host may still cache its disk.",
            },
            "sharding_seconds_cold": None
            if sharding_seconds is None
            else round(sharding_seconds, 1),
            "runs": runs,
            "median_images_per_second": medians,
            "shards_over_folder": ratios,
        },
    )
    print(f"# saved {path.name}")
    if not options.work:
        shutil.rmtree(scratch)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
