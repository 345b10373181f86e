"""The GPU path, measured in one go (issue 19, target 4): resnet18 trained on a generated
image folder on CUDA with bf16 autocast and channels-last, as one process and as one process
under torchrun with NCCL, the trained run evaluated, and timm's train.py on the same data
with the same recipe, in under 5 minutes on a GPU machine.

    convnet train resnet18 --data DIR --device cuda --precision bf16 --epochs 1 ...
    torchrun --standalone --nproc-per-node 1 -m convnet train resnet18 --data DIR \\
        --device cuda --precision bf16 --backend nccl ...
    convnet evaluate RUN --data DIR --json
    python train.py --data-dir DIR --model resnet18 --device cuda --amp --amp-dtype bfloat16 \\
        --channels-last --pin-mem ...          (benchmarks/folder_train_speed.py's recipe)

images/s are counted as in benchmarks/folder_train_speed.py: per-step wall times after the
first --skip-steps steps (worker start-up), from each trainer's own log. The folder holds
500×375 JPEGs, --distinct of them drawn and the rest copies (decoding costs the same; drawing
thousands would take most of the 5 minutes). Results, with the GPU's name, go to
benchmarks/gpu_path.json.

Run on a machine with a CUDA GPU: `python benchmarks/gpu_path.py --timm-train PATH`.
Without one it refuses (exit 2); `--dry-run` runs every step on the CPU with a handful of
images (gloo instead of NCCL) to check the script itself, and saves nothing beside it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import hardware, hardware_line, judge, load_average, save_results  # noqa: E402
from folder_eval_speed import write_photos  # noqa: E402
from folder_train_speed import (  # noqa: E402
    CLASSES,
    convnet_command,
    require_timm,
    run_convnet,
    run_timed,
    run_timm,
    thread_environment,
    timm_command,
    usage_error,
)

TIME_LIMIT = 300  # seconds: the issue asks for one script under 5 minutes


def write_folder(root: Path, train_images: int, val_images: int, distinct: int) -> Path:
    """root/data/{train,val}/classNN/*.JPEG: `distinct` drawn photos, repeated by copying."""
    write_photos(root / "drawn", min(distinct, train_images), CLASSES)
    drawn = sorted((root / "drawn" / "val").rglob("*.JPEG"))
    data = root / "data"
    for split, count in (("train", train_images), ("val", val_images)):
        for index in range(count):
            source = drawn[index % len(drawn)]
            target = data / split / source.parent.name / f"{index:06d}.JPEG"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
    return data


def arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timm-train", metavar="PATH", help="a copy of timm's train.py")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="every step on the CPU with a handful of images; saves nothing",
    )
    parser.add_argument("--steps", type=int, help="training steps (default 40; dry run 3)")
    parser.add_argument("--skip-steps", type=int, help="first steps left out (default 5; dry 1)")
    parser.add_argument("--batch-size", type=int, help="per step (default 256; dry run 4)")
    parser.add_argument("--workers", type=int, help="DataLoader workers (default: CPUs, ≤ 16)")
    parser.add_argument("--distinct", type=int, default=1000, help="photos actually drawn")
    parser.add_argument("--val-images", type=int, help="(default 1024; dry run 8)")
    return parser


def settings(options: argparse.Namespace) -> argparse.Namespace:
    """Fill the defaults: a GPU-sized run, or a handful of images for --dry-run."""
    import os

    small = options.dry_run
    defaults = {
        "steps": 3 if small else 40,
        "skip_steps": 1 if small else 5,
        "batch_size": 4 if small else 256,
        "val_images": 8 if small else 1024,
        "workers": 1 if small else min(16, os.cpu_count() or 1),
    }
    for key, value in defaults.items():
        if getattr(options, key) is None:
            setattr(options, key, value)
    options.threads = 1 if small else min(8, os.cpu_count() or 1)
    if options.steps <= options.skip_steps or options.batch_size < 1 or options.workers < 0:
        raise usage_error(
            "--steps must exceed --skip-steps, --batch-size be at least 1 and --workers 0 or more."
        )
    return options


def main() -> int:
    options = settings(arguments().parse_args())
    import torch

    if not options.dry_run and not torch.cuda.is_available():
        raise usage_error(
            "This script measures the GPU path and needs a CUDA GPU, but PyTorch sees none "
            "here. Run it on a machine with an NVIDIA GPU, or add --dry-run to check its "
            "steps on the CPU with a handful of images."
        )
    timm_train = require_timm(options.timm_train)
    device = "cpu" if options.dry_run else "cuda"
    precision = "bf16" if device == "cuda" else "auto"  # the CPU: bf16 where native
    backend = "nccl" if device == "cuda" else "gloo"
    facts = hardware()
    gpu = facts["cuda"] if device == "cuda" else None
    print(f"# GPU path — {gpu or 'dry run on the CPU'}; {hardware_line(facts)}", flush=True)
    started = time.perf_counter()
    environment = thread_environment(options.threads)
    batch, skip = options.batch_size, options.skip_steps
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="convnet-gpu-path-") as scratch:
        root = Path(scratch)
        data = write_folder(root, options.steps * batch, options.val_images, options.distinct)
        print(f"folder written: {time.perf_counter() - started:.0f} s", flush=True)
        one = root / "one-process"
        command = convnet_command(data, one, options, precision, device)
        rows["convnet, 1 process"] = run_convnet(command, one, batch, skip, environment)
        launcher = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "1",
            "-m",
            "convnet",
        ]
        ranked = root / "torchrun"
        command = [
            *convnet_command(data, ranked, options, precision, device, launcher),
            "--backend",
            backend,
        ]
        rows[f"convnet, torchrun 1 process ({backend})"] = run_convnet(
            command, ranked, batch, skip, environment, label=f"torchrun ({backend})"
        )
        command = [
            sys.executable,
            "-m",
            "convnet",
            "evaluate",
            str(one),
            "--data",
            str(data),
            "--device",
            device,
            "--workers",
            str(options.workers),
            "--json",
        ]
        done, wall = run_timed(command, environment, "convnet evaluate", root)
        evaluation = json.loads(done.stdout)
        timm_out = root / "timm"
        resolved = rows["convnet, 1 process"]["precision"]  # "auto" on the CPU: bf16 or fp32
        command = timm_command(timm_train, data, timm_out, options, resolved, device)
        if device == "cuda":  # convnet pins its batches on CUDA
            command.append("--pin-mem")
        rows["timm train.py"] = run_timm(command, timm_out, batch, skip, environment)
    seconds = time.perf_counter() - started
    for name, row in rows.items():
        print(
            f"{name:<36} {row['images_per_second']:>9.1f} images/s over {row['steps']} steps "
            f"of {batch} ({row['wall_seconds']:.0f} s wall)"
        )
    print(
        f"{'convnet evaluate':<36} {evaluation['images_per_second']:>9.1f} images/s, top-1 "
        f"error {evaluation['top1_error']:.2%} ({wall:.0f} s wall)"
    )
    convnet_rate = rows["convnet, 1 process"]["images_per_second"]
    ratio = convnet_rate / rows["timm train.py"]["images_per_second"]
    print(
        f"convnet ÷ timm: {ratio:.2f}×; {gpu or 'CPU dry run'}; {seconds:.0f} s in all, load "
        f"average {load_average()}"
    )
    # A dry run on the CPU checks the script, not the target: nothing to judge.
    targets = (
        []
        if options.dry_run
        else judge(
            {"GPU path: two launches, evaluation and timm in under 5 minutes": seconds < TIME_LIMIT}
        )
    )
    document = {
        "gpu": gpu,
        "device": device,
        "precision": rows["convnet, 1 process"]["precision"],
        "backend": backend,
        "batch_size": batch,
        "steps": options.steps,
        "skipped_steps": skip,
        "workers": options.workers,
        "data": {
            "train_images": options.steps * batch,
            "val_images": options.val_images,
            "distinct_photos": options.distinct,
            "image_size": [500, 375],
        },
        "runs": rows,
        "evaluation": {
            key: evaluation.get(key)
            for key in ("images_per_second", "top1_error", "top5_error", "num_examples", "workers")
        },
        "convnet_over_timm": round(ratio, 3),
        "seconds": round(seconds, 1),
        "targets": targets,
    }
    if options.dry_run:  # the document is built and saved as for real, but not beside us
        with tempfile.TemporaryDirectory() as elsewhere:
            save_results(str(Path(elsewhere) / "gpu_path.py"), document)
        print("# dry run: nothing saved")
        return 0
    print(f"# saved {save_results(__file__, document).name}")
    return 0 if all(target["met"] for target in targets) else 1


if __name__ == "__main__":
    raise SystemExit(main())
