"""The peer of `convnet evaluate --data` in `folder_eval_speed.py`: timm's own data pipeline
(`timm.data.create_dataset` + `timm.data.create_loader`, its defaults otherwise, as its
`validate.py` uses them) scoring timm's resnet18 with the same weights file.

It imports only torch, safetensors and timm, so its start-up is timm's, not convnet's.
Prints one JSON document: images, top-1 and top-5 hits, and the seconds of the loop.
Run: `python benchmarks/timm_folder_eval.py --data DIR --weights W.safetensors`.
"""

from __future__ import annotations

import argparse
import json
import time

import timm
import torch
from safetensors.torch import load_file
from timm.data import create_dataset, create_loader

# torchvision's ImageNet evaluation preset, which convnet uses for torchvision's weights:
# shorter side 256, centre crop 224 (crop_pct 224/256), bilinear, ImageNet mean and std.
CROP_PCT = 224 / 256
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a folder with val/<class>/*.JPEG")
    parser.add_argument("--weights", required=True, help="resnet18 safetensors (torchvision keys)")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="bf16")
    parser.add_argument("--threads", type=int, help="PyTorch threads (default: PyTorch's)")
    options = parser.parse_args()
    if options.threads:
        torch.set_num_threads(options.threads)
    model = timm.create_model("resnet18", num_classes=options.classes)
    # timm's ResNet names its parameters as torchvision's does: the same network, same weights.
    model.load_state_dict(load_file(options.weights), strict=True)
    # validate.py --channels-last with bf16; plain NCHW with fp32, as convnet's engine does
    # (convnet.engine.device.memory_format): each pipeline in the same layout at each precision
    layout = torch.channels_last if options.precision == "bf16" else torch.contiguous_format
    model.eval().to(memory_format=layout)
    dataset = create_dataset("", root=options.data, split="validation")
    loader = create_loader(
        dataset,
        input_size=(3, 224, 224),
        batch_size=options.batch_size,
        interpolation="bilinear",
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        num_workers=options.workers,
        crop_pct=CROP_PCT,
        crop_mode="center",
        device=torch.device("cpu"),
    )
    images = top1 = top5 = 0
    started = time.perf_counter()
    with (
        torch.inference_mode(),
        torch.autocast("cpu", torch.bfloat16, enabled=options.precision == "bf16"),
    ):
        for inputs, targets in loader:
            logits = model(inputs.contiguous(memory_format=layout)).float()
            best = logits.topk(5, dim=1).indices
            images += len(targets)
            top1 += int((best[:, 0] == targets).sum())
            top5 += int((best == targets[:, None]).any(dim=1).sum())
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "images": images,
                "top1_correct": top1,
                "top5_correct": top5,
                "seconds": round(seconds, 4),
                "classes": list(dataset.reader.class_to_idx),
            }
        )
    )


if __name__ == "__main__":
    main()
