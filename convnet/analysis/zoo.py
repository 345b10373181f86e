"""The model zoo side by side: what each ImageNet network scored, and what its depth and
size cost — parameters, multiply-accumulates, memory, and images/s measured here.

Counts come from `summarize` on models built on the meta device (no memory, no arithmetic);
speed comes from real forward passes of randomly initialized models, fp32 against the fast
precision of the shared inference path (bf16 autocast + channels-last where the CPU has
native bf16).
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from convnet.analysis.summary import summarize
from convnet.engine.device import cpu_has_native_bf16, fast_inference, resolve_precision
from convnet.models import get_model, get_model_spec
from convnet.models.imagenet import CHALLENGE_ENTRIES

SPEED_BATCH_SIZE = 16


@dataclass
class ZooRow:
    name: str
    family: str
    year: int
    top5_error: float  # percent, the family's ILSVRC entry
    entry: str
    source: str
    depth: int
    params: int
    macs: int
    weight_bytes: int
    activation_bytes: int  # per image, outputs of the layers of the summary
    fp32_images_per_second: float | None = None
    fast_images_per_second: float | None = None
    fast_precision: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def zoo_names() -> list[str]:
    """The registered ImageNet models, oldest family first, then by depth."""

    def order(name: str) -> tuple:
        digits = "".join(character for character in name if character.isdigit())
        return CHALLENGE_ENTRIES[name].year, get_model_spec(name).family, int(digits or 0), name

    return sorted(CHALLENGE_ENTRIES, key=order)


def zoo_row(name: str, num_classes: int = 1000) -> ZooRow:
    """Depth, parameters, MACs and memory of `name` at its 224×224 input (no weights made)."""
    spec = get_model_spec(name)
    with torch.device("meta"):
        model = get_model(name, num_classes=num_classes)
    total = summarize(model, spec.input_size, name).total
    entry = CHALLENGE_ENTRIES[name]
    return ZooRow(
        name=name,
        family=spec.family,
        year=entry.year,
        top5_error=entry.top5_error,
        entry=entry.entry,
        source=entry.source,
        depth=total["depth"],
        params=total["params"],
        macs=total["macs"],
        weight_bytes=total["weight_bytes"],
        activation_bytes=total["activation_bytes"],
    )


@torch.inference_mode()
def images_per_second(
    model: nn.Module,
    input_size: tuple[int, int, int],
    precision: str,
    device: torch.device | None = None,
    batch_size: int = SPEED_BATCH_SIZE,
    repeats: int = 3,
    warmup: int = 1,
) -> tuple[float, list[float]]:
    """Median images/s of `model` on random batches through the shared inference path, and
    the seconds of each timed batch. The warm-up batches let oneDNN pick its kernels."""
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, not {repeats}")
    device = device or torch.device("cpu")
    model = model.to(device).eval()
    batch = torch.randn(batch_size, *input_size, generator=torch.Generator().manual_seed(0))
    times = []
    with fast_inference(model, device, precision) as prepare:
        batch = prepare(batch.to(device))
        for index in range(warmup + repeats):
            start = time.perf_counter()
            model(batch)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if index >= warmup:
                times.append(time.perf_counter() - start)
    return batch_size / statistics.median(times), times


def measure_speed(
    row: ZooRow, fast_precision: str, batch_size: int = SPEED_BATCH_SIZE, repeats: int = 3
) -> None:
    """Fill `row`'s images/s in fp32 and in `fast_precision` on this machine's CPU."""
    torch.manual_seed(0)
    model = get_model(row.name)
    size = get_model_spec(row.name).input_size
    row.fp32_images_per_second = round(
        images_per_second(model, size, "fp32", batch_size=batch_size, repeats=repeats)[0], 2
    )
    row.fast_images_per_second = round(
        images_per_second(model, size, fast_precision, batch_size=batch_size, repeats=repeats)[0],
        2,
    )
    row.fast_precision = fast_precision


def zoo_table(
    names: Iterable[str] | None = None,
    speed: bool = True,
    batch_size: int = SPEED_BATCH_SIZE,
    repeats: int = 3,
    progress: Callable[[Iterable], Iterable] = lambda items: items,
) -> list[ZooRow]:
    """One row per model; with `speed`, images/s in fp32 and in the CPU's fast precision."""
    rows = [zoo_row(name) for name in (names or zoo_names())]
    if speed:
        fast = resolve_precision("auto", torch.device("cpu"))
        for row in progress(rows):
            measure_speed(row, fast, batch_size, repeats)
    return rows


def hardware() -> dict:
    """What a speed figure was measured on (airbench style: state it with the figure)."""
    name = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {
        "cpu": name,
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "native_bf16": cpu_has_native_bf16(),
        "torch": torch.__version__,
        "load_average_1min": None if load is None else round(load, 2),
    }
