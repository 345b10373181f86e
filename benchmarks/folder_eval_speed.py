"""Throughput of `convnet evaluate MODEL --weights W --data DIR` on photo-sized JPEGs
(issue 5): decoding in DataLoader workers, resize 256 → centre crop 224, resnet18.

We have no ImageNet here, so the script writes an ImageNet-like folder first: N JPEGs of
500×375 pixels (the typical ILSVRC2012 size) in 10 class folders, and random resnet18
weights for 10 classes (the figure is speed, not accuracy). It then runs the command as a
user would, once per precision, and saves images/s with the machine's facts.
Run: `python benchmarks/folder_eval_speed.py [--images 1000] [--workers N]`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))

from common import dumps, hardware, hardware_line, save_results  # noqa: E402

from convnet.engine.checkpoint import save_weights  # noqa: E402
from convnet.models import get_model  # noqa: E402


def write_photos(root: Path, count: int, classes: int = 10) -> None:
    """Smooth colour fields with noise, 500×375 JPEG quality 90: ImageNet's typical size."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:375, 0:500].astype(np.float32)
    for index in range(count):
        label = index % classes
        folder = root / "val" / f"class{label:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        base = np.stack([x / 500 * 255, y / 375 * 255, (x + y) / 875 * 255], axis=-1)
        pixels = np.roll(base, 20 * label, axis=1) + rng.normal(0, 20, (375, 500, 3))
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(
            folder / f"{index:06d}.JPEG", quality=90
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--workers", type=int, help="default: the command's, min(4, CPUs)")
    parser.add_argument("--batch-size", type=int, default=64)
    options = parser.parse_args()
    facts = hardware()
    load_start = os.getloadavg()[0]
    print(hardware_line(facts) + f", load average {load_start:.1f}", file=sys.stderr)
    runs = []
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        write_photos(root / "photos", options.images)
        torch.manual_seed(0)
        save_weights(root / "resnet18.safetensors", get_model("resnet18", num_classes=10))
        for precision in ("fp32", "bf16"):
            command = ["evaluate", "resnet18", "--weights", str(root / "resnet18.safetensors"),
                       "--data", str(root / "photos"), "--precision", precision,
                       "--batch-size", str(options.batch_size), "--json"]  # fmt: skip
            if options.workers is not None:
                command += ["--workers", str(options.workers)]
            done = subprocess.run([sys.executable, "-m", "convnet", *command],
                                  capture_output=True, text=True, check=True)  # fmt: skip
            result = json.loads(done.stdout)
            runs.append({
                "command": "convnet " + " ".join(command[:3]) + " W.safetensors --data DIR "
                           + " ".join(command[6:]),
                "precision": precision, "images": result["num_examples"],
                "workers": result["workers"], "batch_size": result["batch_size"],
                "seconds": result["eval_seconds"], "images_per_second": result["images_per_second"],
            })  # fmt: skip
            print(f"{precision}: {result['images_per_second']:.1f} images/s "
                  f"({result['num_examples']} images, {result['workers']} workers)", file=sys.stderr)  # fmt: skip
    document = {"image_size": [500, 375], "model": "resnet18",
                "preprocessing": "resize 256, centre crop 224", "runs": runs}  # fmt: skip
    save_results(__file__, document)
    print(dumps(document))


if __name__ == "__main__":
    main()
