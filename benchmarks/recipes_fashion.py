"""Random erasing on Fashion-MNIST: convnet's default recipe against the named recipe
`fashion-mnist-random-erasing` (the same, with `--random-erase 0.5`), ResNet-20 in both.

Anchor: Zhong et al. 2020, "Random Erasing Data Augmentation" (AAAI), Fashion-MNIST rows of
Table 1: ResNet-20 4.39% → 4.02% test error (−0.37 points, −8% of the error) and WRN-28-10
4.01% → 3.65%, each trained 300 epochs on a GPU, random crop and flip, SGD ÷10 at epochs 150
and 225, erasing with p = 0.5, area 2–40%, random values. Here the budget is what 2 CPU
cores train in minutes: `--epochs` (10) over `--train-subset` (20,000) images, with convnet's
own augmentation of the digits-sized images (shift ±2 px, rotation ±10°, scale 0.9–1.1),
warm-up then cosine, and torchvision's erasing (area 2–33%, value 0 after normalising, the
mean). The question is the direction and size of the gain, not the paper's absolute error.

Each recipe trains once per seed through the engine (`convnet.fit`), one process, `--threads`
CPU threads; the script prints and saves (recipes_fashion.json) every run's test error, the
mean ± spread (min–max) of each recipe, and the gain with its spread over seeds.

Run: `python benchmarks/recipes_fashion.py [--seeds 0 1 2] [--epochs 10] [--train-subset 20000]
[--save-as NAME.json]` (about 30 minutes on a quiet 2-core machine at the defaults). Half that
compute, spent as 40 epochs over 2,500 images, asks the question where the network
overfits, the regime a regulariser is for: `--epochs 40 --train-subset 2500 --save-as
recipes_fashion_small.json`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import hardware, hardware_line, load_average, save_results  # noqa: E402

import convnet  # noqa: E402
from convnet.data.datasets import fetch_dataset  # noqa: E402
from convnet.engine.named_recipes import load_recipe  # noqa: E402

NAMED = "fashion-mnist-random-erasing"
PAPER = {"ResNet-20": (4.39, 4.02), "WRN-28-10": (4.01, 3.65)}  # Zhong et al. 2020, Table 1


def train(recipe: dict, seed: int, epochs: int, subset: int, threads: int, out: Path) -> dict:
    started = time.perf_counter()
    options = {**recipe, "seed": seed, "epochs": epochs, "train_subset": subset}
    model = options.pop("model")
    result = convnet.fit(model, **options, out=out, threads=threads, log=lambda message: None)
    return {
        "seed": seed,
        "test_error": result["top1_error"],
        "train_seconds": result["train_seconds"],
        "wall_seconds": round(time.perf_counter() - started, 1),
    }


def summary(errors: list[float]) -> str:
    percent = [100 * error for error in errors]
    return (
        f"{statistics.mean(percent):.2f}% ({min(percent):.2f}–{max(percent):.2f}, "
        f"{len(percent)} seeds)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--train-subset", type=int, default=20_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--save-as", default=None, metavar="NAME.json", help="beside the script (default: its name)"
    )
    args = parser.parse_args(argv)
    facts = hardware()
    print(hardware_line(facts), flush=True)
    fetch_dataset("fashion-mnist", log=print)
    named = load_recipe(NAMED)
    default = {key: value for key, value in named.items() if key != "random_erase"}
    default.update(random_erase=0.0, recipe=None)
    named["recipe"] = NAMED
    runs: dict[str, list[dict]] = {"default": [], NAMED: []}
    with tempfile.TemporaryDirectory(prefix="convnet-recipes-") as scratch:
        for seed in args.seeds:  # the two recipes in turn, so a change of load favours neither
            for name, recipe in (("default", default), (NAMED, named)):
                out = Path(scratch) / f"{name}-{seed}"
                runs[name].append(
                    train(recipe, seed, args.epochs, args.train_subset, args.threads, out)
                )
                row = runs[name][-1]
                print(
                    f"seed {seed} {name}: test error {100 * row['test_error']:.2f}% in "
                    f"{row['train_seconds']:.0f} s of training",
                    flush=True,
                )
    errors = {name: [row["test_error"] for row in rows] for name, rows in runs.items()}
    gains = [100 * (a - b) for a, b in zip(errors["default"], errors[NAMED], strict=True)]
    print(
        f"resnet_mini (ResNet-20) on {args.train_subset:,} Fashion-MNIST images, {args.epochs} "
        f"epochs: default {summary(errors['default'])}, {NAMED} {summary(errors[NAMED])}; "
        f"gain {statistics.mean(gains):+.2f} points (per seed {', '.join(f'{g:+.2f}' for g in gains)})"
    )
    base, erased = PAPER["ResNet-20"]
    print(
        f"Zhong et al. 2020, ResNet-20, 300 epochs on all 60,000: {base}% → {erased}% "
        f"({erased - base:+.2f} points, {100 * (erased - base) / base:+.0f}% of the error); "
        f"here {-statistics.mean(gains) / statistics.mean(errors['default']):+.0f}% of the error"
    )
    path = save_results(
        __file__,
        {
            "hardware": facts,
            "load_average_at_end": load_average(),
            "settings": vars(args),
            "recipes": {"default": default, NAMED: named},
            "runs": runs,
            "gain_points": gains,
            "paper": {"source": "Zhong et al. 2020, Table 1, Fashion-MNIST", "rows": PAPER},
        },
        args.save_as,
    )
    print(f"saved {path.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
