"""How fast the batched augmentation policies run, against torchvision's v2 transforms
applied image by image on the same machine (convnet/data/policies.py).

For each policy (RandAugment, TrivialAugment Wide, AugMix, AutoAugment ImageNet, random
erasing with p = 0.5) and 1×32×32 and 3×32×32 images: images per second of the batched
`Augmentation` on 128-image batches (fresh draws each time), and of torchvision's transform
applied to the same 128 images one by one (uint8, as torchvision's policies take them;
random erasing on float images), timed in turns. Medians over the rounds. Target: each is
at least 5× faster batched than torchvision image by image; the seconds it adds to an
epoch of MNIST's 60,000 images are printed beside it.

    python benchmarks/policy_speed.py [--rounds 11] [--threads N]

Results and the machine's facts go to benchmarks/policy_speed.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torchvision.transforms import v2

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))

from common import hardware, hardware_line, judge, save_results  # noqa: E402

from convnet.data.policies import POLICIES, random_erasing  # noqa: E402

BATCH = 128
TARGET = 5.0  # times faster than torchvision image by image
MNIST = 60_000
TORCHVISION = {
    "ra": v2.RandAugment,
    "ta_wide": v2.TrivialAugmentWide,
    "augmix": v2.AugMix,
    "imagenet": lambda: v2.AutoAugment(v2.AutoAugmentPolicy.IMAGENET),
    "erase": lambda: v2.RandomErasing(p=0.5),
}


def timed(work, *arguments) -> float:
    started = time.perf_counter()
    work(*arguments)
    return time.perf_counter() - started


def measure(name: str, channels: int, rounds: int) -> dict:
    """Median seconds per 128 images of the batched policy and of torchvision image by image,
    timed in turns (one of each per round, after an untimed one) so that a change of load
    on a shared machine falls on both."""
    generator = torch.Generator().manual_seed(0)
    uint8 = torch.randint(0, 256, (BATCH, channels, 32, 32), dtype=torch.uint8, generator=generator)
    images = uint8.float() / 255
    augmentation = random_erasing(0.5, 0.0) if name == "erase" else POLICIES[name]
    transform = TORCHVISION[name]()
    inputs = images if name == "erase" else uint8
    batched, per_image = [], []
    for _ in range(rounds + 1):
        draws = torch.rand(BATCH, augmentation.draws, generator=generator)
        batched.append(timed(augmentation.apply, images, draws))
        per_image.append(timed(lambda: [transform(image) for image in inputs]))
    batched_s, per_image_s = statistics.median(batched[1:]), statistics.median(per_image[1:])
    return {
        "policy": name,
        "channels": channels,
        "batched_images_per_second": round(BATCH / batched_s),
        "torchvision_images_per_second": round(BATCH / per_image_s),
        "speedup": round(per_image_s / batched_s, 1),
        "seconds_per_mnist_epoch": round(MNIST / BATCH * batched_s, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=11, help="timed batches of each policy")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(hardware_line(hardware()))
    rows = []
    header = f"{'policy':<9} {'C':>2} {'batched img/s':>14} {'torchvision img/s':>18} {'×':>6}"
    print(header + f" {'s/MNIST epoch':>14}")
    for name in TORCHVISION:
        for channels in (1, 3):
            row = measure(name, channels, max(1, args.rounds))
            rows.append(row)
            print(
                f"{name:<9} {channels:>2} {row['batched_images_per_second']:>14,} "
                f"{row['torchvision_images_per_second']:>18,} {row['speedup']:>6}"
                f" {row['seconds_per_mnist_epoch']:>14}"
            )
    slowest = min(row["speedup"] for row in rows)
    target = f"every policy ≥ {TARGET:g}× torchvision image by image"
    targets = judge({target: slowest >= TARGET})
    document = {"batch": BATCH, "threads": torch.get_num_threads(), "results": rows}
    path = save_results(__file__, {**document, "targets": targets})
    print(f"saved {path.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
