"""The GPU path, measured in one go on a machine with a CUDA GPU (issue 31, item 5; issue 19,
target 4): resnet18 on a generated image folder with bf16 autocast and channels-last.

1. The data path alone, the same step loop fed two ways for --steps steps each: float32
   normalised in the DataLoader workers (the path before: 602 KB per 224² image over the
   workers' queues and the host-to-device copy) against uint8 from the workers (150 KB),
   normalised on the GPU by the engine's `DeviceNormalize`; both with persistent workers.
2. The engine: `convnet train resnet18 --data DIR --device cuda --precision bf16` as one
   process, and as one process under torchrun with NCCL; the run evaluated.
3. NCCL itself: an all-reduce between 2 processes (torch.multiprocessing) where there are
   2 GPUs or more, else a one-process NCCL group.
4. With `--timm-train PATH`, timm's train.py on the same data and recipe
   (benchmarks/folder_train_speed.py's).

images/s are counted over the steps after the first --skip-steps (worker start-up, cuDNN's
search): in the loop by synchronising with the GPU around the timed steps, for the engine
from its steps.csv (per-step host times, which add up to the interval's). The folder holds
500×375 JPEGs, --distinct of them drawn and the rest copies. Results, with the GPU's name,
the CUDA, cuDNN and torch versions, the commit and the load, go to benchmarks/gpu_path.json.

Run: `python benchmarks/gpu_path.py [--timm-train PATH]` (a few minutes). Without a CUDA GPU
it refuses (exit 2); `--dry-run` runs every step on the CPU with a handful of images (gloo
instead of NCCL) to check the script itself, and saves nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
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
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


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
    parser.add_argument("--steps", type=int, help="steps of each data path (default 200; dry 3)")
    parser.add_argument("--train-steps", type=int, help="convnet train's steps (default 40; dry 3)")
    parser.add_argument("--skip-steps", type=int, help="first steps left out (default 10; dry 1)")
    parser.add_argument("--batch-size", type=int, help="per step (default 256; dry run 4)")
    parser.add_argument("--workers", type=int, help="DataLoader workers (default: CPUs, ≤ 16)")
    parser.add_argument("--distinct", type=int, default=1000, help="photos actually drawn")
    parser.add_argument("--val-images", type=int, help="(default 1024; dry run 8)")
    return parser


def settings(options: argparse.Namespace) -> argparse.Namespace:
    """Fill the defaults: a GPU-sized run, or a handful of images for --dry-run."""
    small = options.dry_run
    defaults = {
        "steps": 3 if small else 200,
        "train_steps": 3 if small else 40,
        "skip_steps": 1 if small else 10,
        "batch_size": 4 if small else 256,
        "val_images": 8 if small else 1024,
        "workers": 1 if small else min(16, os.cpu_count() or 1),
    }
    for key, value in defaults.items():
        if getattr(options, key) is None:
            setattr(options, key, value)
    options.threads = 1 if small else min(8, os.cpu_count() or 1)
    if (
        min(options.steps, options.train_steps) <= options.skip_steps
        or options.batch_size < 1
        or options.workers < 0
    ):
        raise usage_error(
            "--steps and --train-steps must exceed --skip-steps, --batch-size be at least 1 "
            "and --workers 0 or more."
        )
    return options


def data_path(data: Path, options: argparse.Namespace, device, pixels: bool) -> dict:
    """images/s of resnet18's bf16 step fed float32 normalised by the workers (`pixels`
    False, the path before) or uint8 normalised on the device by `DeviceNormalize`."""
    import torch
    from torch.utils.data import DataLoader, RandomSampler

    from convnet.data.folders import FolderDataset, open_image_collection
    from convnet.data.preparation import training_transform
    from convnet.data.transforms import DeviceNormalize
    from convnet.engine.device import autocast, set_cudnn_benchmark
    from convnet.models import get_model

    collection = open_image_collection(data, "train")
    transform = training_transform(224, MEAN, STD, pixels=pixels)
    batch, steps = options.batch_size, options.steps
    loader = DataLoader(
        FolderDataset(collection, transform),
        batch_size=batch,
        sampler=RandomSampler(collection.samples, num_samples=batch * steps),
        num_workers=options.workers,
        pin_memory=device.type == "cuda",
        persistent_workers=options.workers > 0,
        prefetch_factor=4 if options.workers else None,
        drop_last=True,
    )
    to_input = DeviceNormalize(MEAN, STD)
    set_cudnn_benchmark(device, (3, 224, 224))
    torch.manual_seed(0)
    model = get_model("resnet18", num_classes=CLASSES).to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    precision = "bf16" if device.type == "cuda" else "fp32"
    synchronize = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    images_sent, started = 0, None
    for step, (images, labels, _) in enumerate(loader):
        if step == options.skip_steps:
            synchronize()
            started = time.perf_counter()
        images_sent = images.element_size() * images[0].numel()
        inputs = to_input(images, device) if pixels else images.to(device, non_blocking=True)
        inputs = inputs.contiguous(memory_format=torch.channels_last)
        with autocast(device, precision):
            loss = torch.nn.functional.cross_entropy(model(inputs), labels.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    synchronize()
    seconds = time.perf_counter() - started
    timed = steps - options.skip_steps
    return {
        "steps": timed,
        "seconds": round(seconds, 3),
        "images_per_second": round(timed * batch / seconds, 1),
        "bytes_per_image_from_workers": images_sent,
    }


def _all_reduce(rank: int, world_size: int, port: int, backend: str, out: dict) -> None:
    """One process of the NCCL check: join the group, all-reduce ones, report the sum."""
    import torch
    import torch.distributed as dist

    device = torch.device("cuda", rank) if backend == "nccl" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(
        backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size
    )
    try:
        values = torch.ones(1 << 20, device=device)
        dist.all_reduce(values)  # the first: sets up the communicators
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        dist.all_reduce(values)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if rank == 0:
            out.update(sum=values[0].item(), seconds=round(time.perf_counter() - started, 6))
    finally:
        dist.destroy_process_group()


def _spawned(rank: int, world_size: int, port: int, backend: str, results) -> None:
    found: dict = {}
    _all_reduce(rank, world_size, port, backend, found)
    if rank == 0:
        results.put(found)


def nccl_check(backend: str) -> dict:
    """An all-reduce of 4 MB of ones: between 2 GPUs in 2 processes where there are 2 or
    more, else in a one-process group; the sum must be the process count."""
    import torch
    import torch.multiprocessing as mp

    with socket.socket() as probe:  # a free port for the group's rendezvous
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    world_size = 2 if backend == "nccl" and torch.cuda.device_count() >= 2 else 1
    if world_size == 1:
        found: dict = {}
        _all_reduce(0, 1, port, backend, found)
    else:
        context = mp.get_context("spawn")
        results = context.SimpleQueue()
        mp.spawn(_spawned, args=(world_size, port, backend, results), nprocs=world_size)
        found = results.get()
    return {
        "backend": backend,
        "processes": world_size,
        "sum_correct": found["sum"] == world_size,
        "all_reduce_seconds_4_mb": found["seconds"],
    }


def engine_runs(data: Path, root: Path, options, device: str, precision: str) -> dict:
    """`convnet train` as one process and under torchrun, then `convnet evaluate` of the run."""
    backend = "nccl" if device == "cuda" else "gloo"
    environment = thread_environment(options.threads)
    batch, skip = options.batch_size, options.skip_steps
    rows = {}
    one = root / "one-process"
    command = convnet_command(data, one, options, precision, device)
    rows["convnet, 1 process"] = run_convnet(command, one, batch, skip, environment)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
                "1", "-m", "convnet"]  # fmt: skip
    ranked = root / "torchrun"
    command = [*convnet_command(data, ranked, options, precision, device, launcher),
               "--backend", backend]  # fmt: skip
    rows[f"convnet, torchrun 1 process ({backend})"] = run_convnet(
        command, ranked, batch, skip, environment, label=f"torchrun ({backend})"
    )
    command = [sys.executable, "-m", "convnet", "evaluate", str(one), "--data", str(data),
               "--device", device, "--workers", str(options.workers), "--json"]  # fmt: skip
    done, wall = run_timed(command, environment, "convnet evaluate", root)
    evaluation = json.loads(done.stdout)
    rows["convnet evaluate"] = {
        key: evaluation.get(key) for key in ("images_per_second", "top1_error", "num_examples")
    } | {"wall_seconds": round(wall, 1)}
    if options.timm_train:
        out = root / "timm"
        command = timm_command(options.timm_train, data, out, options, precision, device)
        if device == "cuda":
            command.append("--pin-mem")
        rows["timm train.py"] = run_timm(command, out, batch, skip, environment)
    return rows


def main() -> int:
    options = settings(arguments().parse_args())
    import torch

    if not options.dry_run and not torch.cuda.is_available():
        raise usage_error(
            "This script measures the GPU path and needs a CUDA GPU, but PyTorch sees none "
            "here. Run it on a machine with an NVIDIA GPU, or add --dry-run to check its "
            "steps on the CPU with a handful of images."
        )
    if options.timm_train:
        options.timm_train = require_timm(options.timm_train)
    device = torch.device("cpu" if options.dry_run else "cuda")
    precision = "bf16" if device.type == "cuda" else "fp32"
    facts = hardware()
    gpu = facts["cuda"] if device.type == "cuda" else None
    print(f"# GPU path — {gpu or 'dry run on the CPU'}; {hardware_line(facts)}", flush=True)
    started = time.perf_counter()
    torch.set_num_threads(options.threads)
    with tempfile.TemporaryDirectory(prefix="convnet-gpu-path-") as scratch:
        root = Path(scratch)
        train_images = options.train_steps * options.batch_size
        data = write_folder(root, train_images, options.val_images, options.distinct)
        print(f"folder written: {time.perf_counter() - started:.0f} s", flush=True)
        paths = {
            "float32 from the workers (before)": data_path(data, options, device, pixels=False),
            "uint8 from the workers, normalised on the device": data_path(
                data, options, device, pixels=True
            ),
        }
        runs = engine_runs(data, root, options, device.type, precision)
    nccl = nccl_check("nccl" if device.type == "cuda" else "gloo")
    seconds = time.perf_counter() - started
    for name, row in {**paths, **runs}.items():
        print(f"{name:<50} {row['images_per_second']:>9.1f} images/s")
    before, after = paths.values()
    ratio = after["images_per_second"] / before["images_per_second"]
    print(f"uint8 ÷ float32: {ratio:.2f}×; NCCL: {nccl}; {seconds:.0f} s, load {load_average()}")
    targets = (
        []  # a dry run on the CPU checks the script, not the target
        if options.dry_run
        else judge(
            {
                "GPU path: both data paths, the engine, NCCL in under 5 minutes": seconds
                < TIME_LIMIT,
                "NCCL all-reduce sums correctly": nccl["sum_correct"],
            }
        )
    )
    document = {
        "gpu": gpu,
        "gpus": torch.cuda.device_count(),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
        "device": device.type,
        "precision": precision,
        "batch_size": options.batch_size,
        "workers": options.workers,
        "data": {
            "train_images": train_images,
            "distinct_photos": options.distinct,
            "image_size": [500, 375],
            "crop": 224,
        },  # fmt: skip
        "data_paths": paths,
        "uint8_over_float32": round(ratio, 3),
        "engine": runs,
        "nccl": nccl,
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
