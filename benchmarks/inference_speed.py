"""Fast CPU inference: plain eager fp32 (`model(batch)`, the reference) against convnet's
shared inference path of `convnet evaluate`/`predict` (batch norms folded into their
convolutions; bf16 autocast + channels-last), for resnet152 and vgg19 at batch 16.

For each model: images/s as the median over timed batches (after a warm-up batch) of eager
fp32, of the shared path in fp32 and in bf16, the spread (min–max), and how faithful bf16 is — cosine similarity of each image's logits
against fp32 on a random-weight model (the issue asks ≥ 0.999). Then the accuracy check:
lenet5 trained for one epoch on MNIST (`TrainConfig`/`fit`), its test accuracy evaluated in
fp32 and in bf16 (the issue asks for no change beyond 0.1 point). The script judges each
target itself (met / NOT met): bf16 at least 2.5× eager fp32 for every model, cosine
similarity at least 0.999, and accuracy within 0.1 point.

    python benchmarks/inference_speed.py [--repeats 5] [--models resnet152 vgg19] [--skip-accuracy]

The hardware, the machine's load, every timing and the figures go to
benchmarks/inference_speed.json beside this script. Speed-ups on a shared machine are lower
than on a quiet one: quote the load with them.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).parent))

from common import hardware, hardware_line, judge, load_average, save_results  # noqa: E402

from convnet.analysis.zoo import images_per_second  # noqa: E402
from convnet.engine.device import fast_inference  # noqa: E402
from convnet.models import get_model, get_model_spec  # noqa: E402

BATCH_SIZE = 16
# The targets: bf16 + channels-last ≥ 2.5× eager fp32, logits faithful to cosine
# 0.999, LeNet-5's test accuracy moved by at most 0.1 point.
SPEED_UP_TARGET = 2.5
COSINE_TARGET = 0.999
ACCURACY_CHANGE_TARGET = 0.1


@torch.inference_mode()
def eager_images_per_second(
    model: torch.nn.Module, size: tuple[int, int, int], repeats: int
) -> tuple[float, list[float]]:
    """The reference: the model called as it is, fp32, default layout, after one warm-up."""
    batch = torch.randn(BATCH_SIZE, *size, generator=torch.Generator().manual_seed(0))
    times = []
    for index in range(1 + repeats):
        start = time.perf_counter()
        model(batch)
        if index:
            times.append(time.perf_counter() - start)
    return BATCH_SIZE / statistics.median(times), times


def speed_and_faithfulness(name: str, repeats: int) -> dict:
    torch.manual_seed(0)
    model = get_model(name).eval()  # 1000 classes, 224×224, random weights
    size = get_model_spec(name).input_size
    fp32, fp32_times = eager_images_per_second(model, size, repeats)
    folded_fp32, _ = images_per_second(model, size, "fp32", batch_size=BATCH_SIZE, repeats=repeats)
    bf16, bf16_times = images_per_second(
        model, size, "bf16", batch_size=BATCH_SIZE, repeats=repeats
    )
    images = torch.randn(BATCH_SIZE, *size, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        reference = model(images).float()
        with fast_inference(model, torch.device("cpu"), "bf16") as prepare:
            fast = model(prepare(images)).float()
    cosine = F.cosine_similarity(reference, fast, dim=1)
    return {
        "model": name,
        "batch_size": BATCH_SIZE,
        "fp32_images_per_second": round(fp32, 2),
        "convnet_fp32_images_per_second": round(folded_fp32, 2),
        "bf16_channels_last_images_per_second": round(bf16, 2),
        "speed_up": round(bf16 / fp32, 2),
        "fp32_batch_seconds": [round(t, 4) for t in fp32_times],
        "bf16_batch_seconds": [round(t, 4) for t in bf16_times],
        "cosine_similarity_min": round(cosine.min().item(), 6),
        "cosine_similarity_mean": round(cosine.mean().item(), 6),
    }


def accuracy_check() -> dict:
    """lenet5, one epoch on MNIST, then test accuracy in fp32 and in bf16."""
    from convnet.engine.config import TrainConfig
    from convnet.engine.evaluate import evaluate
    from convnet.engine.run import load_run
    from convnet.engine.train import fit

    with tempfile.TemporaryDirectory() as directory:
        start = time.perf_counter()
        fit(
            TrainConfig(model="lenet5", epochs=1, precision="fp32", out=directory),
            log=lambda message: print(message, file=sys.stderr),
        )
        train_seconds = time.perf_counter() - start
        loaded = load_run(Path(directory))
    source = loaded.evaluation_source()
    result = {"model": "lenet5", "epochs": 1, "train_seconds": round(train_seconds, 1)}
    cpu = torch.device("cpu")
    for precision in ("fp32", "bf16"):
        scores = evaluate(loaded.model, source, cpu, precision).result
        result[f"{precision}_test_accuracy"] = round(1 - scores["top1_error"], 6)
    result["change_points"] = round(
        100 * (result["bf16_test_accuracy"] - result["fp32_test_accuracy"]), 3
    )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--models", nargs="+", default=["resnet152", "vgg19"])
    parser.add_argument("--skip-accuracy", action="store_true")
    args = parser.parse_args()

    print(f"# {hardware_line(hardware())} at the start", flush=True)
    print(
        f"# batch {BATCH_SIZE}, median of {args.repeats} timed batches after 1 warm-up, "
        "random weights, 224×224"
    )
    print(
        f"{'model':<11}{'eager fp32':>12}{'convnet fp32':>14}{'convnet bf16':>14}{'speed-up':>10}"
        f"{'  eager s/batch (min–max)':>27}{'cos min':>10}   (images/s)"
    )
    speed = []
    for name in args.models:
        row = speed_and_faithfulness(name, args.repeats)
        speed.append(row)
        spread = f"{min(row['fp32_batch_seconds']):.2f}–{max(row['fp32_batch_seconds']):.2f}"
        print(
            f"{name:<11}{row['fp32_images_per_second']:>12.2f}{row['convnet_fp32_images_per_second']:>14.2f}"
            f"{row['bf16_channels_last_images_per_second']:>14.2f}{row['speed_up']:>9.2f}×"
            f"{spread:>27}{row['cosine_similarity_min']:>10.5f}",
            flush=True,
        )
    accuracy = None
    if not args.skip_accuracy:
        accuracy = accuracy_check()
        print(
            f"lenet5 (1 epoch): test accuracy fp32 {accuracy['fp32_test_accuracy']:.2%}, "
            f"bf16 {accuracy['bf16_test_accuracy']:.2%}, change {accuracy['change_points']:+.2f} points"
        )
    print(f"# load average {load_average()} at the end")
    checks = {}
    for row in speed:
        checks[f"{row['model']}: bf16 ≥ {SPEED_UP_TARGET}× eager fp32 ({row['speed_up']}×)"] = (
            row["speed_up"] >= SPEED_UP_TARGET
        )
        checks[f"{row['model']}: cosine ≥ {COSINE_TARGET} ({row['cosine_similarity_min']})"] = (
            row["cosine_similarity_min"] >= COSINE_TARGET
        )
    if accuracy is not None:
        change = accuracy["change_points"]
        checks[f"lenet5 accuracy moved ≤ {ACCURACY_CHANGE_TARGET} point ({change:+.2f})"] = (
            abs(change) <= ACCURACY_CHANGE_TARGET
        )
    targets = judge(checks)
    document = {"repeats": args.repeats, "speed": speed, "accuracy": accuracy, "targets": targets}
    path = save_results(__file__, document)
    print(f"# saved {path.name}")
    return 0 if all(target["met"] for target in targets) else 1


if __name__ == "__main__":
    raise SystemExit(main())
