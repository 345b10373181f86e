"""Where the time of `convnet evaluate --data` goes, per image (issue 19): reading and
decoding a 500×375 JPEG, making it an RGB photo, resize 256 + centre crop 224, the float
tensor, and the model; and what compiling the model for inference costs and saves.

Each preparation step is timed in this process on one thread over the same photos, the
variants interleaved; the alternative the issue names (`torchvision.io.decode_jpeg` and a
uint8 tensor resize) is timed beside PIL's and its largest pixel difference reported. The
model (resnet18, 10 classes, bf16 channels-last through the engine's `fast_inference`) is
timed at batch 64 with PyTorch's threads: eager, `torch.jit.trace` + `torch.jit.freeze`,
and `torch.compile` with Inductor's freezing, each with the seconds it takes before its
first batch, so that the break-even image count is setup / (eager − compiled per image).
Run: `python benchmarks/folder_eval_breakdown.py [--images 100] [--repeats 5]`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg, read_file
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

sys.path.insert(0, str(Path(__file__).parent))

from common import dumps, hardware, hardware_line, save_results  # noqa: E402
from folder_eval_speed import IMAGENET, write_photos  # noqa: E402

from convnet.data.images import as_photo, oriented, pixel_values  # noqa: E402
from convnet.engine.device import fast_inference  # noqa: E402
from convnet.models import get_model  # noqa: E402


def pil_decode(path: Path) -> Image.Image:
    with Image.open(path) as image:
        image.load()
        return image


def float_round_trip(image: Image.Image) -> Image.Image:
    """What `as_photo` did to every photo before it returned opaque 8-bit images as they are:
    values in [0, 1] as float64 and back to 8 bits (the same pixels, at a cost)."""
    rgb, _ = pixel_values(oriented(image))
    return Image.fromarray(np.round(rgb * 255).astype(np.uint8), "RGB")


def pil_resize_crop(image: Image.Image) -> Image.Image:
    image = TF.resize(image, 256, InterpolationMode.BILINEAR, antialias=True)
    return TF.center_crop(image, 224)


def to_normalised(image: Image.Image) -> torch.Tensor:
    tensor = TF.convert_image_dtype(TF.pil_to_tensor(image), torch.float)
    return TF.normalize(tensor, *IMAGENET)


def tensor_decode(path: Path) -> torch.Tensor:
    return decode_jpeg(read_file(str(path)), mode=ImageReadMode.RGB)


def tensor_resize_crop(image: torch.Tensor) -> torch.Tensor:
    image = TF.resize(image, 256, InterpolationMode.BILINEAR, antialias=True)
    return TF.center_crop(image, 224)


def per_image_ms(step: Callable, inputs: list, repeats: int) -> list[float]:
    """Milliseconds per input of `step` over all of `inputs`, once per repeat."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        for value in inputs:
            step(value)
        times.append((time.perf_counter() - started) / len(inputs) * 1000)
    return times


def preparation(files: list[Path], repeats: int) -> dict:
    """ms per image of each preparation step, one thread, PIL and tensor paths interleaved."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a DataLoader worker runs one thread
    decoded = [pil_decode(path) for path in files]
    photos = [as_photo(image) for image in decoded]
    crops = [pil_resize_crop(photo) for photo in photos]
    tensors = [tensor_decode(path) for path in files]
    steps = {
        "PIL: read + decode": (pil_decode, files),
        "as_photo (RGB, orientation)": (as_photo, decoded),
        "as_photo before: float64 round trip": (float_round_trip, decoded),
        "PIL: resize 256 + crop 224": (pil_resize_crop, photos),
        "float tensor + normalise": (to_normalised, crops),
        "torchvision.io: read + decode_jpeg": (tensor_decode, files),
        "uint8 tensor: resize 256 + crop 224": (tensor_resize_crop, tensors),
    }
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):  # interleaved: a load change hits every step alike
        for name, (step, inputs) in steps.items():
            times[name] += per_image_ms(step, inputs, 1)
    torch.set_num_threads(threads)
    difference = max(
        int((TF.pil_to_tensor(crop).int() - tensor_resize_crop(tensor).int()).abs().max())
        for crop, tensor in zip(crops, tensors, strict=True)
    )
    return {
        "ms_per_image": {name: round(statistics.median(t), 3) for name, t in times.items()},
        "tensor_path_max_pixel_difference": difference,
    }


def model_variants(batches: int, repeats: int) -> dict:
    """Setup seconds and ms per image at batch 64 of eager, jit-frozen and compiled resnet18."""
    torch.manual_seed(0)
    model = get_model("resnet18", num_classes=10).eval()
    inputs = torch.randn(64, 3, 224, 224)
    results = {}
    with torch.inference_mode(), fast_inference(model, torch.device("cpu"), "bf16") as prepare:
        batch = prepare(inputs)
        reference = model(batch).float()
        builders = {
            "eager": lambda: model,
            "torch.jit.freeze": lambda: torch.jit.freeze(torch.jit.trace(model, batch)),
            "torch.compile (freezing), empty cache": lambda: compiled(model),
            "torch.compile (freezing), cached": lambda: compiled(model, again=True),
        }
        forwards = {}
        for name, build in builders.items():
            started = time.perf_counter()
            forward = build()
            output = forward(batch).float()  # the first batch compiles
            results[name] = {
                "setup_seconds": round(time.perf_counter() - started, 2),
                "max_logit_difference": float((output - reference).abs().max()),
            }
            forwards[name] = forward
        times: dict[str, list[float]] = {name: [] for name in forwards}
        for _ in range(repeats):
            for name, forward in forwards.items():
                started = time.perf_counter()
                for _ in range(batches):
                    forward(batch)
                times[name].append((time.perf_counter() - started) / (64 * batches) * 1000)
    eager = statistics.median(times["eager"])
    for name, entry in results.items():
        entry["ms_per_image"] = round(statistics.median(times[name]), 3)
        saved = eager - entry["ms_per_image"]  # per image, against the eager model's
        extra = entry["setup_seconds"] - results["eager"]["setup_seconds"]  # before batch 1
        if name != "eager":
            entry["break_even_images"] = round(extra * 1000 / saved) if saved > 0 else None
    return results


def compiled(model: torch.nn.Module, again: bool = False) -> Callable:
    """`torch.compile` for inference; `again`: a second process's compile, which finds the
    first one's kernels in Inductor's on-disk cache (a fresh one per run of this script)."""
    import torch._inductor.config as inductor

    if again:
        torch._dynamo.reset()  # forget the compiled graph in memory, keep the disk cache
    inductor.freezing = True  # weights as constants: prepacked for oneDNN, folded
    return torch.compile(model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100, help="photos the steps are timed on")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batches", type=int, default=2, help="batches of 64 per model timing")
    parser.add_argument("--skip-model", action="store_true")
    options = parser.parse_args()
    print(hardware_line(hardware()), file=sys.stderr)
    cache = tempfile.TemporaryDirectory()  # Inductor's cache starts empty: the first compile
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache.name  # is a first run's on this machine
    with tempfile.TemporaryDirectory() as temporary:
        write_photos(Path(temporary), options.images)
        files = sorted(Path(temporary).rglob("*.JPEG"))
        document = {"images": options.images, "preparation": preparation(files, options.repeats)}
    for name, value in document["preparation"]["ms_per_image"].items():
        print(f"  {name:<38} {value:6.2f} ms/image (one thread)", file=sys.stderr)
    if not options.skip_model:
        document["model"] = model_variants(options.batches, options.repeats)
        document["model_threads"] = torch.get_num_threads()
        for name, entry in document["model"].items():
            print(
                f"  {name:<38} {entry['ms_per_image']:6.2f} ms/image at batch 64 "
                f"({document['model_threads']} threads), setup {entry['setup_seconds']} s, "
                f"break-even {entry.get('break_even_images', '-')} images",
                file=sys.stderr,
            )
    print(hardware_line(hardware()), file=sys.stderr)
    save_results(__file__, document)
    print(dumps(document))


if __name__ == "__main__":
    main()
