"""The data path on the CPU, this checkout against another (issue 31, item 5: uint8 batches
from persistent workers, the counts read every 50 steps must not slow the CPU): two
trainings through the command line, each interleaved with the other checkout's, rounds
alternating which goes first.

    convnet train lenet5 --epochs 2 --seed S --threads 1                       (MNIST in memory)
    convnet train resnet_mini --data DIR --workers 1 --epochs 3 --batch-size 64 --threads 1

DIR is written once: 1,280 training and 256 validation JPEGs of 500×375 (so decoding, the
crop and the workers' queues are most of resnet_mini's step). Each run's images/s is its
results.json's (the epochs' images over their seconds, workers' start-up included), and
the CPU-seconds the command and its workers took; the ratios are this checkout's images/s
over the other's, and the other's CPU-seconds over this one's, round by round.

Run: `python benchmarks/data_path_cpu.py --compare-with TREE [--rounds 3]`, TREE another
checkout (e.g. `git clone --shared . /tmp/base && git -C /tmp/base checkout BASE`).
Saved in benchmarks/data_path_cpu.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import commit_of, hardware, hardware_line, load_average, save_results  # noqa: E402
from folder_eval_speed import write_photos  # noqa: E402

HERE = Path(__file__).resolve().parent.parent
TRAININGS = {
    "lenet5 on MNIST, 1 thread": ["lenet5", "--epochs", "2"],
    "resnet_mini on a JPEG folder, 1 worker, 1 thread": [
        "resnet_mini", "--epochs", "3", "--batch-size", "64", "--workers", "1",
    ],
}  # fmt: skip


def write_folder(root: Path) -> Path:
    """root/data/{train,val}/classNN/*.JPEG: 1,280 and 256 photos of 500×375."""
    data = root / "data"
    for split, count in (("train", 1280), ("val", 256)):
        write_photos(root / f"{split}-photos", count)
        shutil.move(str(root / f"{split}-photos" / "val"), str(data / split))
    return data


def train(tree: Path, arguments: list[str], out: Path, seed: int) -> dict:
    """`convnet train ARGUMENTS --seed S --threads 1` of the checkout in `tree`: its images/s
    (results.json's) and the CPU-seconds it and its workers took (user + system), which
    other programs on the machine change less than they change the wall time."""
    load = load_average()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        [sys.executable, "-m", "convnet", "train", *arguments, "--seed", str(seed),
         "--threads", "1", "--out", str(out), "--json"],
        cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)}, capture_output=True, text=True,
        timeout=3600,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"{tree}: convnet train failed:\n{done.stderr[-3000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    result = json.loads(done.stdout)
    return {
        "images_per_second": result["images_per_second"],
        "cpu_seconds": round(cpu, 2),
        "train_seconds": result["train_seconds"],
        "top1_error": result["top1_error"],
        "load_average_before": load,
    }


def compare(other: Path, rounds: int, data: Path, scratch: Path) -> dict:
    """Each training `rounds` times with each checkout, alternating which goes first."""
    found = {}
    for name, arguments in TRAININGS.items():
        if "--workers" in arguments:
            arguments = [arguments[0], "--data", str(data), *arguments[1:]]
        runs: dict[str, list[dict]] = {"this": [], "other": []}
        for round_ in range(rounds):
            pair = [("this", HERE), ("other", other)]
            for side, tree in pair if round_ % 2 == 0 else pair[::-1]:
                out = scratch / f"{side}-{len(found)}-{round_}"
                runs[side].append(train(tree, arguments, out, seed=round_))
                print(f"  {name}, round {round_}, {side}: "
                      f"{runs[side][-1]['images_per_second']:,.0f} images/s", flush=True)  # fmt: skip
        pairs = list(zip(runs["this"], runs["other"], strict=True))
        ratios = [a["images_per_second"] / b["images_per_second"] for a, b in pairs]
        cpu = [b["cpu_seconds"] / a["cpu_seconds"] for a, b in pairs]  # above 1: this uses less
        found[name] = {
            "arguments": arguments,
            "runs": runs,
            "ratio": [round(r, 3) for r in ratios],
            "median_ratio": round(statistics.median(ratios), 3),
            "cpu_seconds_other_over_this": [round(r, 3) for r in cpu],
            "median_cpu_ratio": round(statistics.median(cpu), 3),
        }
        print(
            f"{name}: images/s this ÷ other {found[name]['median_ratio']} (per round "
            f"{found[name]['ratio']}); CPU-seconds other ÷ this {found[name]['median_cpu_ratio']}"
        )
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare-with", type=Path, required=True, metavar="TREE")
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    print(f"# data path on the CPU — {hardware_line(hardware())}", flush=True)
    with tempfile.TemporaryDirectory(prefix="convnet-data-path-") as scratch:
        data = write_folder(Path(scratch))
        found = compare(options.compare_with.resolve(), options.rounds, data, Path(scratch))
    document = {
        "other_commit": commit_of(options.compare_with),
        "this_commit": commit_of(HERE),
        "rounds": options.rounds,
        "trainings": found,
        "note": "a 2-core machine shared with other jobs: see the load averages",
    }
    print(f"# saved {save_results(__file__, document).name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
