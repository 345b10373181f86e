"""Training throughput on an image folder (issue 19, target 3): `convnet train resnet18 --data
DIR` against timm's own `train.py` on the same folder, the same recipe where they overlap and
the same number of steps, run by run in alternation.

We have no ImageNet here, so the script writes an ImageNet-like folder first: 500×375 JPEGs
(ILSVRC2012's typical size, `folder_eval_speed.write_photos`) in 10 classes, train/ and val/.
Both trainers then run one epoch as a user would (a subprocess each, whole command):

    convnet train resnet18 --data DIR --epochs 1 --batch-size 32 --lr 0.01 --momentum 0.9 \\
        --weight-decay 5e-4 --label-smoothing 0.1 --workers 2 --threads T --precision P
    python train.py --data-dir DIR --model resnet18 --num-classes 10 --epochs 1 -b 32 \\
        --opt sgd --lr 0.01 --momentum 0.9 --weight-decay 5e-4 --smoothing 0.1 \\
        --color-jitter 0 --train-interpolation bilinear -j 2 --channels-last \\
        [--amp --amp-dtype bfloat16] --log-interval 1

Shared recipe: SGD with Nesterov momentum 0.9 (timm's "sgd" is Nesterov), lr 0.01, weight
decay 5e-4 on weights only (timm filters biases and norms too), label smoothing 0.1, random
resized crop to 224 (8–100% of the area, aspect 3/4–4/3, bilinear) and a horizontal flip,
ToTensor + ImageNet normalisation in the workers, bf16 autocast where convnet uses it on this
CPU, channels-last, the same worker count, batch and CPU threads (OMP_NUM_THREADS for both,
--threads for convnet, whose automatic choice would otherwise drop to 1 thread on a busy
machine). timm's colour jitter (default 0.4) and random interpolation are turned off, as
convnet has neither. Learning-rate warm-up differs (convnet's 5% linear warm-up, timm's none),
which costs nothing.

images/s: each trainer's per-step wall times (convnet: RUN/steps.csv, images / images-per-
second of each step; timm: the `Time:` of each `Train:` line with --log-interval 1), each
from the end of the step before, so data waits count. The first `--skip-steps` steps of both
are left out: they include starting the DataLoader workers and the first batch's decoding.
Evaluation, checkpoints and process start-up are outside the steps for both.

timm's train.py is not in its pip package: pass a copy with --timm-train PATH (e.g. from
https://github.com/huggingface/pytorch-image-models, the version matching the installed timm).
Run: `python benchmarks/folder_train_speed.py --timm-train PATH [--rounds 2]`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import hardware, hardware_line, judge, load_average, save_results  # noqa: E402
from folder_eval_speed import write_photos  # noqa: E402

TARGET = 1.2  # issue 19: folder training at least 1.2× timm's train.py
CLASSES = 10  # write_photos' classes
TIMM_STEP = re.compile(r"Train: \d+ \[\s*(\d+)/(\d+).*?Time: ([\d.]+)s")


def usage_error(message: str) -> SystemExit:
    """A user's mistake: one paragraph on standard error, exit status 2."""
    print(message, file=sys.stderr)
    return SystemExit(2)


def require_timm(timm_train: str | None) -> Path:
    """timm installed and a copy of its train.py given, else exit 2 saying how to get them."""
    if importlib.util.find_spec("timm") is None:
        raise usage_error(
            "This benchmark compares convnet with timm, which is not installed here. Install "
            "it with: pip install 'convnet[benchmark]' (or pip install 'timm>=1.0')."
        )
    if timm_train is None or not Path(timm_train).is_file():
        given = f"{timm_train} is not a file. " if timm_train else ""
        raise usage_error(
            f"{given}Pass timm's training script with --timm-train PATH: train.py is not in "
            "timm's pip package; take it from https://github.com/huggingface/pytorch-image-models "
            "at the version of the installed timm."
        )
    return Path(timm_train).resolve()


def write_training_folder(root: Path, train_images: int, val_images: int) -> Path:
    """root/data/train/classNN/*.JPEG and root/data/val/classNN/*.JPEG of 500×375 photos.

    write_photos draws the same sequence each call, so the validation images repeat the first
    training images; harmless for a speed figure."""
    data = root / "data"
    for split, count in (("train", train_images), ("val", val_images)):
        write_photos(root / f"{split}-photos", count, CLASSES)
        shutil.move(str(root / f"{split}-photos" / "val"), str(data / split))
    return data


def images_per_second(step_seconds: list[float], batch_size: int, skip: int) -> dict:
    """images/s over the steps after the first `skip`, with the steps and seconds counted."""
    kept = step_seconds[skip:]
    if not kept:
        raise SystemExit(f"only {len(step_seconds)} steps ran; need more than --skip-steps {skip}")
    seconds = sum(kept)
    return {
        "steps": len(kept),
        "seconds": round(seconds, 3),
        "images_per_second": round(len(kept) * batch_size / seconds, 3),
    }


def run_timed(
    command: list[str], environment: dict, label: str, cwd: Path
) -> tuple[subprocess.CompletedProcess, float]:
    """Run one whole command; what it printed, and its wall seconds."""
    load_before = load_average()
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=environment, cwd=cwd)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{label} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    print(
        f"  {label}: {wall:.1f} s wall, load average {load_before} → {load_average()}",
        file=sys.stderr,
        flush=True,
    )
    return done, wall


def convnet_command(
    data: Path,
    out: Path,
    options: argparse.Namespace,
    precision: str,
    device: str,
    launcher: list[str] | None = None,
) -> list[str]:
    """`convnet train resnet18 --data DIR` with the shared recipe, as a command line."""
    launcher = launcher or [sys.executable, "-m", "convnet"]
    return [
        *launcher,
        "train",
        "resnet18",
        "--data",
        str(data),
        "--epochs",
        "1",
        "--batch-size",
        str(options.batch_size),
        "--lr",
        "0.01",
        "--momentum",
        "0.9",
        "--weight-decay",
        "5e-4",
        "--label-smoothing",
        "0.1",
        "--workers",
        str(options.workers),
        "--precision",
        precision,
        "--device",
        device,
        "--threads",
        str(options.threads),
        "--out",
        str(out),
        "--json",
    ]


def run_convnet(
    command: list[str],
    out: Path,
    batch_size: int,
    skip: int,
    environment: dict,
    label: str = "convnet",
) -> dict:
    """Run a convnet training command; images/s from its steps.csv, and its results."""
    done, wall = run_timed(command, environment, label, out.parent)
    result = json.loads(done.stdout)
    rows = (out / "steps.csv").read_text().splitlines()[1:]
    per_step = [float(row.split(",")[4]) for row in rows]  # images/s of each step
    seconds = [batch_size / value for value in per_step]
    return {
        **images_per_second(seconds, batch_size, skip),
        "wall_seconds": round(wall, 1),
        "all_steps": len(seconds),
        "precision": result["precision"],
        "threads": result["threads"],
        "world_size": result["world_size"],
        "backend": result["backend"],
        "top1_error": result["top1_error"],
    }


def timm_command(
    timm_train: Path,
    data: Path,
    out: Path,
    options: argparse.Namespace,
    precision: str,
    device: str,
) -> list[str]:
    """timm's train.py with the shared recipe, logging every step."""
    command = [
        sys.executable,
        str(timm_train),
        "--data-dir",
        str(data),
        "--model",
        "resnet18",
        "--num-classes",
        str(CLASSES),
        "--epochs",
        "1",
        "-b",
        str(options.batch_size),
        "--opt",
        "sgd",
        "--lr",
        "0.01",
        "--momentum",
        "0.9",
        "--weight-decay",
        "5e-4",
        "--smoothing",
        "0.1",
        "--color-jitter",
        "0",
        "--train-interpolation",
        "bilinear",
        "--warmup-epochs",
        "0",
        "-j",
        str(options.workers),
        "--channels-last",
        "--device",
        device,
        "--log-interval",
        "1",
        "--output",
        str(out),
    ]
    if precision == "bf16":
        command += ["--amp", "--amp-dtype", "bfloat16"]
    if device == "cpu":  # timm's prefetcher normalises on the GPU
        command.append("--no-prefetcher")
    return command


def run_timm(command: list[str], out: Path, batch_size: int, skip: int, environment: dict) -> dict:
    """Run timm's train.py; images/s from the per-step `Time:` of its log."""
    done, wall = run_timed(command, environment, "timm train.py", out.parent)
    text = done.stdout + done.stderr
    seconds = [float(match[2]) for match in TIMM_STEP.findall(text)]
    if not seconds:
        raise SystemExit(f"timm's train.py logged no steps:\n{text[-3000:]}")
    return {
        **images_per_second(seconds, batch_size, skip),
        "wall_seconds": round(wall, 1),
        "all_steps": len(seconds),
    }


def thread_environment(threads: int) -> dict:
    """The environment both trainers run in: the same OpenMP thread count, and this
    checkout's convnet importable from the scratch folder the commands run in."""
    root = str(Path(__file__).resolve().parent.parent)
    path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": path}


def arguments() -> argparse.ArgumentParser:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timm-train", metavar="PATH", help="a copy of timm's train.py")
    parser.add_argument("--steps", type=int, default=12, help="training steps of each run")
    parser.add_argument("--skip-steps", type=int, default=2, help="first steps left out")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of both")
    parser.add_argument(
        "--threads",
        type=int,
        default=torch.get_num_threads(),
        help="CPU threads of both (default: PyTorch's, here %(default)s)",
    )
    parser.add_argument("--val-images", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2, help="runs of each, alternating")
    return parser


def main() -> int:
    options = arguments().parse_args()
    if options.steps <= options.skip_steps or min(options.batch_size, options.rounds) < 1:
        raise usage_error("--steps must exceed --skip-steps; --batch-size and --rounds ≥ 1.")
    timm_train = require_timm(options.timm_train)
    import tempfile

    import timm
    import torch

    from convnet.engine.device import resolve_precision

    precision = resolve_precision("auto", torch.device("cpu"))  # convnet's choice on this CPU
    facts = hardware()
    print(f"# folder training speed — {hardware_line(facts)}", flush=True)
    environment = thread_environment(options.threads)
    rows: dict[str, list[dict]] = {"convnet": [], "timm": []}
    with tempfile.TemporaryDirectory(prefix="convnet-folder-train-") as scratch:
        root = Path(scratch)
        data = write_training_folder(root, options.steps * options.batch_size, options.val_images)
        for round_index in range(options.rounds):
            order = ["convnet", "timm"] if round_index % 2 == 0 else ["timm", "convnet"]
            for name in order:
                out = root / f"{name}-{round_index}"
                if name == "convnet":
                    command = convnet_command(data, out, options, precision, "cpu")
                    row = run_convnet(
                        command, out, options.batch_size, options.skip_steps, environment
                    )
                else:
                    command = timm_command(timm_train, data, out, options, precision, "cpu")
                    row = run_timm(
                        command, out, options.batch_size, options.skip_steps, environment
                    )
                rows[name].append(row)
                print(
                    f"round {round_index + 1} {name}: {row['images_per_second']:.2f} images/s "
                    f"over {row['steps']} steps",
                    flush=True,
                )
    convnet_rate = statistics.median(row["images_per_second"] for row in rows["convnet"])
    timm_rate = statistics.median(row["images_per_second"] for row in rows["timm"])
    ratio = convnet_rate / timm_rate
    per_round = [
        c["images_per_second"] / t["images_per_second"]
        for c, t in zip(rows["convnet"], rows["timm"], strict=True)
    ]
    print(
        f"convnet {convnet_rate:.2f} images/s, timm {timm_rate:.2f} images/s (medians of "
        f"{options.rounds}): {ratio:.2f}× (per round: "
        f"{', '.join(f'{value:.2f}' for value in per_round)}); {facts['cpu']}, "
        f"{options.threads} threads, {precision}, load average {load_average()} at the end"
    )
    targets = judge({f"folder training ≥ {TARGET}× timm's train.py": ratio >= TARGET})
    path = save_results(
        __file__,
        {
            "data": {
                "classes": CLASSES,
                "train_images": options.steps * options.batch_size,
                "val_images": options.val_images,
                "image_size": [500, 375],
                "format": "JPEG q90",
            },
            "recipe": {
                "model": "resnet18",
                "batch_size": options.batch_size,
                "steps": options.steps,
                "skipped_steps": options.skip_steps,
                "workers": options.workers,
                "threads": options.threads,
                "precision": precision,
                "crop": 224,
                "optimizer": "SGD nesterov momentum 0.9, lr 0.01, weight decay 5e-4",
                "label_smoothing": 0.1,
                "channels_last": True,
            },
            "timm_version": timm.__version__,
            "convnet": rows["convnet"],
            "timm": rows["timm"],
            "convnet_images_per_second": convnet_rate,
            "timm_images_per_second": timm_rate,
            "convnet_over_timm": round(ratio, 3),
            "per_round": [round(v, 3) for v in per_round],
            "targets": targets,
        },
    )
    print(f"# saved {path.name}")
    return 0 if all(target["met"] for target in targets) else 1


if __name__ == "__main__":
    raise SystemExit(main())
