"""Claim 6: what a CNN costs against an ordinary network — memory, arithmetic, time.

The lecture: a CNN takes more memory than a multilayer perceptron, convolution takes
about 2/3 of the run time, and a CNN runs about 3× slower than a network with the same
number of parameters. Counts come from `convnet.analysis.summary.summarize` (the same
totals `convnet summary` prints); times are medians of repeated calls on this machine, in
ROUNDS rounds whose medians give the spread; each layer type's share of run time comes from
`torch.profiler`, once per round.

A time means something only on a quiet machine: on a busy one the measuring thread waits
for a core and its medians measure the scheduler. With one thread on the CPU (the default)
the clock is the thread's own CPU time, which waiting does not advance; the share of the
wall time that thread ran says how busy the machine was. The timing claims are judged only
when the machine was quiet (load average below its cores, the thread running at least
QUIET_CPU_SHARE of the time) and the rounds agree (SPREAD_LIMIT, SHARE_SPREAD_LIMIT);
otherwise their verdict is "not judged" with the reason (`TimingConditions`).
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
from convnet.engine.threads import available_cpus
from convnet.errors import UserError
from convnet.experiments import cpu_threads
from convnet.experiments.timing import (
    ROUNDS,
    SHARE_SPREAD_LIMIT,
    SPREAD_LIMIT,
    Clock,
    TimingConditions,
    relative_spread,
    round_medians,
    unjudged_reason,
    unjudged_text,
)
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
NOT_JUDGED = "not judged"


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
    # "inference" / "training" -> str(batch) -> median seconds per image (all rounds)
    seconds_per_image: dict = field(default_factory=dict)
    # "inference" / "training" -> str(batch) -> the rounds' medians' (max − min) / median
    time_spread: dict = field(default_factory=dict)
    # "inference" / "training" -> str(batch) -> layer type -> share of profiled time (mean
    # over the rounds)
    time_shares: dict = field(default_factory=dict)
    # "inference" / "training" -> str(batch) -> largest (max − min) of a type's share
    share_spread: dict = field(default_factory=dict)


@dataclass
class CostResult:
    models: list[ModelCost]
    device: str
    precision: str
    threads: int
    load_average: list[float]
    repeats: dict
    claims: list[dict]
    conditions: TimingConditions | None = None

    def to_dict(self) -> dict:
        document = asdict(self)
        document["conditions"] = self.conditions.to_dict() if self.conditions else None
        return document


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
    """Each layer type's share of the time of the top-level profiled operators (one round)."""
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


def _mean_shares(rounds: list[dict[str, float]]) -> tuple[dict[str, float], float]:
    """Each layer type's mean share over the rounds, and the largest (max − min) of one."""
    kinds = sorted({kind for shares in rounds for kind in shares})
    values = {kind: [shares.get(kind, 0.0) for shares in rounds] for kind in kinds}
    mean = {kind: round(sum(v) / len(v), 4) for kind, v in values.items()}
    return mean, round(max((max(v) - min(v) for v in values.values()), default=0.0), 4)


def measure_model(
    name: str,
    device: torch.device,
    precision: str,
    repeats: dict[int, int],
    profile_repeats: int = 5,
    progress: tqdm | None = None,
    clock: Clock | None = None,
    rounds: int = ROUNDS,
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
    clock = clock or Clock(time.perf_counter)
    model = get_model(name).to(device)
    for batch in BATCH_SIZES:
        for kind, step in _steps(model, batch, spec.input_size, device, precision).items():
            per_round = max(1, -(-repeats[batch] // rounds))
            medians = round_medians(step, per_round, max(2, repeats[batch] // 10), clock, rounds)
            cost.seconds_per_image.setdefault(kind, {})[str(batch)] = (
                statistics.median(medians) / batch
            )
            cost.time_spread.setdefault(kind, {})[str(batch)] = round(relative_spread(medians), 4)
            shares, spread = _mean_shares(
                [_time_shares(step, profile_repeats) for _ in range(rounds)]
            )
            cost.time_shares.setdefault(kind, {})[str(batch)] = shares
            cost.share_spread.setdefault(kind, {})[str(batch)] = spread
            if progress is not None:
                progress.update()
    return cost


def _verdict(supported: bool, partly: bool = False) -> str:
    return "supported" if supported else "depends" if partly else "not supported"


def _largest(spreads: dict) -> float:
    return max((value for batches in spreads.values() for value in batches.values()), default=0.0)


def _timing_claim(claim: dict, reason: dict | None) -> dict:
    """A timing claim as measured, its verdict withheld (and why) when `reason` is given."""
    if reason is None:
        return claim
    return {
        **claim,
        "verdict": NOT_JUDGED,
        "unjudged": reason,
        "why": unjudged_text(reason) + f"; {claim['why']}",
    }


def judge_claims(models: list[ModelCost], conditions: TimingConditions | None = None) -> list[dict]:
    """Set the lecture's three cost claims beside what was measured for a CNN and an MLP;
    the two about time only when `conditions` and the rounds' spread allow a verdict."""
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
    share_claim = {
        "id": "convolution_share",
        "claim": "convolution ≈ 2/3 of run time",
        "model": cnn.model,
        "measured": ", ".join(f"{key}: {share:.0%}" for key, share in shares.items()),
        "values": shares,
        "spread": _largest(cnn.share_spread),
        "verdict": _verdict(all(near), any(near)),
        "why": "supported where the convolution share is within 10 points of 67%",
    }
    claims.append(
        _timing_claim(
            share_claim,
            unjudged_reason(conditions, share_claim["spread"], SHARE_SPREAD_LIMIT, "points"),
        )
    )

    ratios = {
        f"{kind} batch {batch}": cnn.seconds_per_image[kind][batch]
        / twin.seconds_per_image[kind][batch]
        for kind in cnn.seconds_per_image
        for batch in cnn.seconds_per_image[kind]
    }
    within = [2.0 <= ratio <= 4.5 for ratio in ratios.values()]
    slowdown = {
        "id": "slowdown",
        "claim": "≈ 3× slower than a network with the same number of parameters",
        "model": f"{cnn.model} vs {twin.model} ({cnn.params:,} vs {twin.params:,} parameters)",
        "models": [cnn.model, twin.model],
        "macs_ratio": cnn.macs / max(twin.macs, 1),
        "measured": ", ".join(f"{key}: {ratio:.1f}×" for key, ratio in ratios.items()),
        "values": {key: round(ratio, 3) for key, ratio in ratios.items()},
        "spread": max(_largest(cnn.time_spread), _largest(twin.time_spread)),
        "verdict": _verdict(all(within), any(within)),
        "why": f"{cnn.model} does {cnn.macs / max(twin.macs, 1):.1f}× the "
        "multiply-accumulates of "
        f"{twin.model}: each weight is reused at every position; supported where the time "
        "ratio is between 2× and 4.5×",
    }
    claims.append(
        _timing_claim(slowdown, unjudged_reason(conditions, slowdown["spread"], SPREAD_LIMIT))
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


def _load_average() -> float | None:
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def run_cost(
    models: tuple[str, ...] = ("lenet5", "mlp_60k"),
    device_name: str = "cpu",
    precision: str = "fp32",
    repeats_batch1: int = 200,
    repeats_batch256: int = 30,
    profile_repeats: int = 5,
    threads: int = 1,
    rounds: int = ROUNDS,
) -> CostResult:
    """Measure every model; eager fp32 on the CPU by default, the setting the lecture assumes.
    Each setting is timed in ROUNDS rounds of about repeats ÷ ROUNDS calls.

    One thread by default: on a shared machine with few cores, a second OpenMP thread that
    waits for a core makes a small convolution's median time jump a hundredfold, which
    measures the scheduler rather than the network. `threads=0` keeps PyTorch's default.
    """
    if repeats_batch1 < 1 or repeats_batch256 < 1:
        raise UserError("--repeats must be at least 1.")
    if rounds < 2:
        raise UserError(f"rounds must be at least 2 to give a spread, not {rounds}.")
    if threads < 0:
        raise UserError(f"--threads must be 0 (PyTorch's default) or more, not {threads}.")
    for name in models:
        get_model_spec(name)
    device = resolve_device(device_name)
    precision = resolve_precision(precision, device)
    repeats = {1: repeats_batch1, 256: repeats_batch256}
    costs = []
    load_before = _load_average()
    with (
        cpu_threads(threads or torch.get_num_threads()) as chosen,
        tqdm(total=len(models) * len(BATCH_SIZES) * 2, desc="timing", unit="setting") as bar,
    ):
        # One thread on the CPU computes in this thread: its CPU time is the call's own.
        one_thread = device.type == "cpu" and chosen == 1
        clock = Clock(time.thread_time if one_thread else time.perf_counter)
        for name in models:
            costs.append(
                measure_model(name, device, precision, repeats, profile_repeats, bar, clock, rounds)
            )
    conditions = TimingConditions(
        clock="thread CPU time" if clock.measures_cpu else "wall time",
        cores=available_cpus(),
        load_before=load_before,
        load_after=_load_average(),
        cpu_share=clock.cpu_share(),
        rounds=rounds,
    )
    return CostResult(
        models=costs,
        device=str(device),
        precision=precision,
        threads=chosen,
        load_average=[round(x, 2) for x in os.getloadavg()],
        repeats={str(k): v for k, v in repeats.items()},
        claims=judge_claims(costs, conditions),
        conditions=conditions,
    )
