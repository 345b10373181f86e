"""Claim 6: what a CNN costs against an ordinary network — memory, arithmetic, time.

The lecture: a CNN takes more memory than a multilayer perceptron, convolution takes
about 2/3 of the run time, and a CNN runs about 3× slower than a network with the same
number of parameters. Counts come from `convnet.analysis.summary.summarize` (the same
totals `convnet summary` prints); times are medians of repeated calls on this machine;
each layer type's share of run time comes from `torch.profiler`.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.nn import functional as F
from torch.profiler import ProfilerActivity, profile
from tqdm import tqdm

from convnet.analysis.summary import summarize
from convnet.engine.device import autocast, resolve_device, resolve_precision
from convnet.errors import UserError
from convnet.experiments import cpu_threads
from convnet.models import get_model, get_model_spec

BATCH_SIZES = (1, 256)
# Profiler operator names (forward and autograd) -> layer type, first match wins.
LAYER_TYPES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("convolution", ("conv", "convolution")),
    ("pooling", ("pool",)),
    ("fully connected", ("linear", "addmm", "mmbackward", "tbackward", "aten::mm", "matmul")),
    ("activation", ("relu", "tanh", "threshold", "sigmoid")),
    ("loss", ("cross_entropy", "nll", "softmax")),
    ("optimizer", ("optimizer",)),
)
LECTURE_CONVOLUTION_SHARE = 2 / 3
LECTURE_SLOWDOWN = 3.0


def layer_type(operator: str) -> str:
    name = operator.lower()
    return next((kind for kind, keys in LAYER_TYPES if any(k in name for k in keys)), "other")


@dataclass
class ModelCost:
    model: str
    family: str
    params: int
    trainable_params: int
    weight_bytes: int
    activation_bytes: int  # per image, every layer's output (as `convnet summary`)
    macs: int
    connections: int
    # "inference" / "training" -> str(batch) -> median seconds per image
    seconds_per_image: dict = field(default_factory=dict)
    # "inference" / "training" -> str(batch) -> layer type -> share of profiled time
    time_shares: dict = field(default_factory=dict)


@dataclass
class CostResult:
    models: list[ModelCost]
    device: str
    precision: str
    threads: int
    load_average: list[float]
    repeats: dict
    claims: list[dict]

    def to_dict(self) -> dict:
        return asdict(self)


def _median_seconds(step: Callable[[], object], repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        step()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        step()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def _steps(
    model: nn.Module, batch: int, input_size: tuple[int, ...], device: torch.device, precision: str
) -> dict[str, Callable[[], object]]:
    """One inference call and one training step (forward, backward, SGD update)."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch, *input_size, generator=generator).to(device)
    labels = torch.randint(0, 10, (batch,), generator=generator).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def synchronize() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def infer() -> None:
        model.eval()
        with torch.inference_mode(), autocast(device, precision):
            model(images)
        synchronize()

    def train_step() -> None:
        model.train()
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, precision):
            logits = model(images)
        F.cross_entropy(logits.float(), labels).backward()
        optimizer.step()
        synchronize()

    return {"inference": infer, "training": train_step}


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """The process's stderr (file descriptor 2) sent to /dev/null: torch.profiler's C++ side
    (Kineto) writes lines of its own there at every start and stop ("profiler_start",
    "profiler_stop", and on a machine without a GPU "gpuGetDeviceCount failed"), about 25 of
    them in a `convnet report lecture`, which Python cannot catch."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _time_shares(step: Callable[[], object], repeats: int) -> dict[str, float]:
    """Each layer type's share of the time of the top-level profiled operators."""
    step()
    with _native_stderr_silenced(), profile(activities=[ProfilerActivity.CPU]) as profiler:
        for _ in range(repeats):
            step()
    totals: dict[str, float] = {}
    for event in profiler.events():
        if event.cpu_parent is None:
            kind = layer_type(event.name)
            totals[kind] = totals.get(kind, 0.0) + event.cpu_time_total
    whole = sum(totals.values()) or 1.0
    return {kind: round(value / whole, 4) for kind, value in sorted(totals.items())}


def measure_model(
    name: str,
    device: torch.device,
    precision: str,
    repeats: dict[int, int],
    profile_repeats: int = 5,
    progress: tqdm | None = None,
) -> ModelCost:
    spec = get_model_spec(name)
    torch.manual_seed(0)
    summary = summarize(get_model(name), spec.input_size, name)
    total = summary.total
    cost = ModelCost(
        model=name,
        family=spec.family,
        params=total["params"],
        trainable_params=total["trainable_params"],
        weight_bytes=total["weight_bytes"],
        activation_bytes=total["activation_bytes"],
        macs=total["macs"],
        connections=total["connections"],
    )
    model = get_model(name).to(device)
    for batch in BATCH_SIZES:
        for kind, step in _steps(model, batch, spec.input_size, device, precision).items():
            seconds = _median_seconds(step, repeats[batch], warmup=max(2, repeats[batch] // 10))
            cost.seconds_per_image.setdefault(kind, {})[str(batch)] = seconds / batch
            cost.time_shares.setdefault(kind, {})[str(batch)] = _time_shares(step, profile_repeats)
            if progress is not None:
                progress.update()
    return cost


def _verdict(supported: bool, partly: bool = False) -> str:
    return "supported" if supported else "depends" if partly else "not supported"


def judge_claims(models: list[ModelCost]) -> list[dict]:
    """Set the lecture's three cost claims beside what was measured for a CNN and an MLP."""
    cnn = next((m for m in models if m.family != "MLP"), None)
    mlps = [m for m in models if m.family == "MLP"]
    if cnn is None or not mlps:
        return []
    # The MLP nearest the CNN in parameters is the "same-parameter network".
    twin = min(mlps, key=lambda m: abs(m.params - cnn.params))
    claims = []

    shares = {
        f"{kind} batch {batch}": by_type.get("convolution", 0.0)
        for kind, batches in cnn.time_shares.items()
        for batch, by_type in batches.items()
    }
    near = [abs(share - LECTURE_CONVOLUTION_SHARE) <= 0.1 for share in shares.values()]
    claims.append(
        {
            "id": "convolution_share",
            "claim": "convolution ≈ 2/3 of run time",
            "model": cnn.model,
            "measured": ", ".join(f"{key}: {share:.0%}" for key, share in shares.items()),
            "values": shares,
            "verdict": _verdict(all(near), any(near)),
            "why": "supported where the convolution share is within 10 points of 67%",
        }
    )

    ratios = {
        f"{kind} batch {batch}": cnn.seconds_per_image[kind][batch]
        / twin.seconds_per_image[kind][batch]
        for kind in cnn.seconds_per_image
        for batch in cnn.seconds_per_image[kind]
    }
    within = [2.0 <= ratio <= 4.5 for ratio in ratios.values()]
    claims.append(
        {
            "id": "slowdown",
            "claim": "≈ 3× slower than a network with the same number of parameters",
            "model": f"{cnn.model} vs {twin.model} ({cnn.params:,} vs {twin.params:,} parameters)",
            "models": [cnn.model, twin.model],
            "macs_ratio": cnn.macs / max(twin.macs, 1),
            "measured": ", ".join(f"{key}: {ratio:.1f}×" for key, ratio in ratios.items()),
            "values": {key: round(ratio, 3) for key, ratio in ratios.items()},
            "verdict": _verdict(all(within), any(within)),
            "why": f"{cnn.model} does {cnn.macs / max(twin.macs, 1):.1f}× the "
            "multiply-accumulates of "
            f"{twin.model}: each weight is reused at every position; supported where the time "
            "ratio is between 2× and 4.5×",
        }
    )

    heavier_weights = [m.model for m in mlps if cnn.weight_bytes > m.weight_bytes]
    heavier_activations = [m.model for m in mlps if cnn.activation_bytes > m.activation_bytes]
    ratio = min(cnn.activation_bytes / max(m.activation_bytes, 1) for m in mlps)
    claims.append(
        {
            "id": "memory",
            "claim": "more memory than a multilayer perceptron (many parameters)",
            "model": cnn.model,
            "measured": f"weights {cnn.weight_bytes / 1024:,.1f} KiB vs "
            + ", ".join(f"{m.model} {m.weight_bytes / 1024:,.1f} KiB" for m in mlps)
            + f"; activations per image {cnn.activation_bytes / 1024:,.1f} KiB vs "
            + ", ".join(f"{m.model} {m.activation_bytes / 1024:,.1f} KiB" for m in mlps),
            "values": {
                "weight_bytes": {m.model: m.weight_bytes for m in [cnn, *mlps]},
                "activation_bytes": {m.model: m.activation_bytes for m in [cnn, *mlps]},
            },
            "verdict": _verdict(
                len(heavier_weights) == len(mlps) and len(heavier_activations) == len(mlps),
                bool(heavier_weights or heavier_activations),
            ),
            "why": f"activations per image: {ratio:.1f}× those of the MLPs at least; weights: "
            f"larger than those of {', '.join(heavier_weights) or 'none of them'} "
            "(supported where both are larger than every MLP's)",
        }
    )
    return claims


def run_cost(
    models: tuple[str, ...] = ("lenet5", "mlp_60k"),
    device_name: str = "cpu",
    precision: str = "fp32",
    repeats_batch1: int = 200,
    repeats_batch256: int = 30,
    profile_repeats: int = 5,
    threads: int = 1,
) -> CostResult:
    """Measure every model; eager fp32 on the CPU by default, the setting the lecture assumes.

    One thread by default: on a shared machine with few cores, a second OpenMP thread that
    waits for a core makes a small convolution's median time jump a hundredfold, which
    measures the scheduler rather than the network. `threads=0` keeps PyTorch's default.
    """
    if repeats_batch1 < 1 or repeats_batch256 < 1:
        raise UserError("--repeats must be at least 1.")
    if threads < 0:
        raise UserError(f"--threads must be 0 (PyTorch's default) or more, not {threads}.")
    for name in models:
        get_model_spec(name)
    device = resolve_device(device_name)
    precision = resolve_precision(precision, device)
    repeats = {1: repeats_batch1, 256: repeats_batch256}
    costs = []
    with (
        cpu_threads(threads or torch.get_num_threads()) as chosen,
        tqdm(total=len(models) * len(BATCH_SIZES) * 2, desc="timing", unit="setting") as bar,
    ):
        for name in models:
            costs.append(measure_model(name, device, precision, repeats, profile_repeats, bar))
    return CostResult(
        models=costs,
        device=str(device),
        precision=precision,
        threads=chosen,
        load_average=[round(x, 2) for x in os.getloadavg()],
        repeats={str(k): v for k, v in repeats.items()},
        claims=judge_claims(costs),
    )
