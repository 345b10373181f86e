"""Throughput of `convnet evaluate MODEL --weights W --data DIR` on photo-sized JPEGs against
timm's own data pipeline (issues 5 and 19): decoding in DataLoader workers, bilinear resize
256 → centre crop 224, resnet18, the same weights, precision, layout, workers and batch size.

We have no ImageNet here, so the script writes an ImageNet-like folder first: N JPEGs of
500×375 pixels (the typical ILSVRC2012 size) in 10 class folders, and random resnet18
weights for 10 classes whose batch-norm statistics are measured on the photos, so that
predictions differ from image to image (the figure is speed; equal top-1/top-5 counts check
that both pipelines compute the same thing: in fp32 they do, image by image; in bf16
convnet's batch norms folded into the convolutions round differently, which can turn a few
near-ties of these random weights). Each repeat runs both whole commands, their
order alternating, as a user would: `convnet evaluate` and `benchmarks/timm_folder_eval.py`
(`timm.data.create_dataset` + `create_loader`). Needs timm: `pip install -e .[benchmark]`.
With `--precisions int8` convnet runs `--precision int8` (quantized by ONNX Runtime, issue 31)
against timm in bf16, its fastest CPU path; the quantization is made once before the timed
runs (its seconds are saved as `int8_setup_seconds`) and its agreement with fp32 is saved (a
figure: these random weights leave near-ties; benchmarks/int8_speed.py judges agreement with
trained weights on real images).
Run: `python benchmarks/folder_eval_speed.py [--images 1000] [--repeats 3] [--workers N]`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))

from common import dumps, hardware, hardware_line, judge, save_results  # noqa: E402

from convnet.data.folders import default_workers  # noqa: E402
from convnet.data.preparation import decode_image, evaluation_transform  # noqa: E402
from convnet.engine.checkpoint import save_weights  # noqa: E402
from convnet.models import get_model  # noqa: E402

PEER = Path(__file__).with_name("timm_folder_eval.py")
TARGET_RATIO = 1.5  # issues 19 and 31: convnet ≥ 1.5× timm's pipeline, whole commands
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))  # torchvision's mean and std


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


@torch.no_grad()
def write_weights(path: Path, photos: Path, classes: int = 10) -> None:
    """Random resnet18 weights whose batch norms hold the statistics of 64 of the photos.

    At initialisation (running mean 0, variance 1) the activations grow layer by layer and
    every image gets the same top class, so equal top-1 counts would prove nothing."""
    torch.manual_seed(0)
    model = get_model("resnet18", num_classes=classes)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # a cumulative average over the calibration batch
    prepare = evaluation_transform(256, 224, *IMAGENET)
    files = sorted(photos.rglob("*.JPEG"))[:64]
    model.train()(torch.stack([prepare(decode_image(file)) for file in files]))
    save_weights(path, model.eval())


def timed(command: list[str]) -> tuple[float, dict]:
    """Wall seconds of a whole command, start-up included, and the JSON it prints."""
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return seconds, json.loads(done.stdout)


def convnet_run(root: Path, precision: str, options: argparse.Namespace) -> dict:
    command = [
        "evaluate",
        "resnet18",
        "--weights",
        str(root / "resnet18.safetensors"),
        "--data",
        str(root / "photos"),
        "--precision",
        precision,
        "--batch-size",
        str(options.batch_size),
        "--workers",
        str(options.workers),
        "--threads",
        str(options.threads),
        "--json",
    ]
    seconds, result = timed([sys.executable, "-m", "convnet", *command])
    images = result["num_examples"]
    extra = {"int8": result["int8"]} if precision == "int8" else {}
    return {
        **extra,
        "pipeline": "convnet",
        "precision": precision,
        "images": images,
        "top1_correct": round((1 - result["top1_error"]) * images),
        "top5_correct": round((1 - result["top5_error"]) * images),
        "command_seconds": round(seconds, 3),
        "loop_seconds": result["eval_seconds"],
        "command": "convnet "
        + " ".join(command[:3])
        + " W.safetensors --data DIR "
        + " ".join(command[6:]),
    }


def timm_run(root: Path, precision: str, options: argparse.Namespace) -> dict:
    """timm's pipeline; against convnet's int8, in bf16 (timm has no int8 CPU path)."""
    compared = precision
    precision = "bf16" if precision == "int8" else precision
    command = [
        "--data",
        str(root / "photos"),
        "--weights",
        str(root / "resnet18.safetensors"),
        "--precision",
        precision,
        "--batch-size",
        str(options.batch_size),
        "--workers",
        str(options.workers),
        "--threads",
        str(options.threads),
    ]
    seconds, result = timed([sys.executable, str(PEER), *command])
    return {
        "pipeline": "timm",
        "precision": compared,
        "timm_precision": precision,
        "images": result["images"],
        "top1_correct": result["top1_correct"],
        "top5_correct": result["top5_correct"],
        "command_seconds": round(seconds, 3),
        "loop_seconds": result["seconds"],
        "command": f"python benchmarks/{PEER.name} --data DIR --weights W.safetensors "
        + " ".join(command[4:]),
    }


def summarise(runs: list[dict], precision: str) -> dict:
    """Median images/s of each pipeline (whole command and loop alone) and their ratios."""
    summary = {}
    for pipeline in ("convnet", "timm"):
        mine = [
            run for run in runs if run["pipeline"] == pipeline and run["precision"] == precision
        ]
        summary[pipeline] = {
            "command_images_per_second": round(
                statistics.median(run["images"] / run["command_seconds"] for run in mine), 2
            ),
            "loop_images_per_second": round(
                statistics.median(run["images"] / run["loop_seconds"] for run in mine), 2
            ),
            "start_up_and_exit_seconds": round(
                statistics.median(run["command_seconds"] - run["loop_seconds"] for run in mine), 2
            ),
            "top1_correct": sorted({run["top1_correct"] for run in mine}),
            "top5_correct": sorted({run["top5_correct"] for run in mine}),
        }
    for kind in ("command", "loop"):
        key = f"{kind}_images_per_second"
        summary[f"{kind}_ratio"] = round(summary["convnet"][key] / summary["timm"][key], 3)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each command")
    parser.add_argument(
        "--workers",
        type=int,
        default=default_workers(),
        help="decoding processes of both pipelines (default: convnet's, min(4, CPUs))",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=torch.get_num_threads(),
        help="PyTorch threads of both (default: PyTorch's, one per core)",
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--precisions", default="bf16,fp32", help="comma-separated: bf16, fp32, int8"
    )
    options = parser.parse_args()
    if importlib.util.find_spec("timm") is None:
        print(
            "folder_eval_speed.py times timm's data pipeline beside convnet's and needs "
            "timm, which is not installed: install the benchmark extra (pip install -e "
            "'.[benchmark]') and run it again.",
            file=sys.stderr,
        )
        sys.exit(2)
    precisions = options.precisions.split(",")
    facts = hardware()
    print(hardware_line(facts), file=sys.stderr)
    runs = []
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        write_photos(root / "photos", options.images)
        write_weights(root / "resnet18.safetensors", root / "photos")
        # bare weights keep their int8 file in convnet's cache: a fresh one, so it is made here
        os.environ["CONVNET_DATA_DIR"] = str(root / "cache")
        setup = {}
        if "int8" in precisions:  # quantize once, as a user's first int8 command does
            started = time.perf_counter()
            first = convnet_run(root, "int8", options)
            setup = {
                "int8_setup_seconds": round(time.perf_counter() - started, 1),
                "int8": first["int8"],
            }
            print(f"int8 made in {setup['int8_setup_seconds']} s (first command)", file=sys.stderr)
        for repeat in range(options.repeats):
            for precision in precisions:
                pair = (convnet_run, timm_run) if repeat % 2 == 0 else (timm_run, convnet_run)
                for run in pair:  # interleaved, the first alternating: load drifts hit both
                    result = run(root, precision, options)
                    result["load_average"] = round(os.getloadavg()[0], 2)
                    runs.append(result)
                    print(
                        f"{result['pipeline']:>7} {precision}: "
                        f"{result['images'] / result['command_seconds']:.1f} images/s whole "
                        f"command ({result['command_seconds']:.1f} s), "
                        f"{result['images'] / result['loop_seconds']:.1f} in the loop; top-1 "
                        f"{result['top1_correct']}, top-5 {result['top5_correct']} of "
                        f"{result['images']}; load {result['load_average']}",
                        file=sys.stderr,
                    )
    summaries = {precision: summarise(runs, precision) for precision in precisions}
    targets = {}
    for precision, summary in summaries.items():
        print(
            f"{precision}: convnet {summary['convnet']['command_images_per_second']} images/s, "
            f"timm {summary['timm']['command_images_per_second']} (whole commands, medians): "
            f"{summary['command_ratio']}×; loops alone {summary['loop_ratio']}×"
        )
        if precision != "int8":
            same = all(
                summary["convnet"][key] == summary["timm"][key]
                for key in ("top1_correct", "top5_correct")
            )
            targets[f"{precision}: identical top-1/top-5 counts"] = same
    for precision in ("bf16", "int8"):
        if precision in summaries:
            ratio = summaries[precision]["command_ratio"]
            versus = f"convnet {precision} whole command ≥ {TARGET_RATIO}× timm bf16"
            targets[f"{versus} (measured {ratio}×)"] = ratio >= TARGET_RATIO
    if setup:  # random weights on synthetic photos: near-ties, so a figure, not the target
        print(f"int8 top-1 agreement with fp32: {setup['int8']['top1_agreement']} (the target, "
              "≥ 0.99 with trained weights on real images: benchmarks/int8_speed.py)")  # fmt: skip
    print(hardware_line(hardware()))
    document = {
        "image_size": [500, 375],
        "images": options.images,
        "model": "resnet18",
        "preprocessing": "bilinear resize 256, centre crop 224, ImageNet mean/std",
        "workers": options.workers,
        "threads": options.threads,
        "batch_size": options.batch_size,
        "runs": runs,
        **setup,
        "summary": summaries,
        "targets": judge(targets),
    }
    # int8 alone is saved beside the bf16/fp32 comparison, not over it
    only_int8 = precisions == ["int8"]
    save_results(__file__, document, name="folder_eval_speed_int8.json" if only_int8 else None)
    print(dumps({"summary": summaries}))


if __name__ == "__main__":
    main()
