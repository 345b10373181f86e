"""Where one epoch of `convnet train lenet5` spends its time, and how far it is from the
compute floor (issue 8).

Runs the engine's own `fit` for one epoch (lenet5 defaults: batch 128, augmentation, bf16
where native, channels-last) over the 60,000 MNIST training images under torch.profiler, and
prints the wall time of its named phases (data, forward, backward, optimizer; the rest is
Python bookkeeping; the epoch's evaluation is not counted), the operators that take longest, and the floor: multiply-accumulates of one
training step (forward + two backward products ≈ 3 × forward) × images ÷ the CPU's peak.
The peak rates are Intel's, typed in below: each floor is computed only on a CPU that has
the hardware it assumes (an Intel CPU with AVX-512 for fp32, AMX-BF16 for bf16) and is
reported as "not computed" elsewhere, with the reason.
Run: `python benchmarks/profile_epoch.py [--threads N]`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).parent))

from common import hardware, hardware_line, save_results  # noqa: E402

from convnet.analysis.summary import summarize  # noqa: E402
from convnet.data.datasets import fetch_dataset  # noqa: E402
from convnet.engine.config import TrainConfig  # noqa: E402
from convnet.engine.device import resolve_precision  # noqa: E402
from convnet.engine.run import Run  # noqa: E402
from convnet.engine.train import fit  # noqa: E402
from convnet.models import get_model, get_model_spec  # noqa: E402

PHASES = ("data", "forward", "backward", "optimizer")
# Peak multiply-accumulates per cycle and core: AVX-512 with two FMA units does 2 × 16 fp32
# (Intel optimization manual, Skylake-SP and later Xeons); an AMX tile unit does 1,024 bf16
# (Intel AMX: TDPBF16PS, 16×16×32 in 16 cycles). Each: (MACs per cycle, what it assumes).
PEAKS = {
    "fp32 AVX-512": (32, "an Intel Xeon with two AVX-512 FMA units (Skylake-SP or later)"),
    "bf16 AMX": (1024, "an Intel Xeon with AMX-BF16 (Sapphire Rapids or later)"),
}


def peak_applies(name: str, facts: dict) -> bool:
    """Whether this CPU has the hardware a typed-in peak rate assumes."""
    intel = facts.get("vendor") == "GenuineIntel"
    required = {"fp32 AVX-512": "avx512f", "bf16 AMX": "amx_bf16"}[name]
    return intel and required in facts.get("isa", [])


def cpu_ghz() -> float:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz"):
                return float(line.split(":", 1)[1]) / 1000
    except (OSError, ValueError):
        pass
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    fetch_dataset("mnist")
    facts = hardware()
    print(
        f"# One epoch of convnet train lenet5, profiled — {hardware_line(facts)}, "
        f"{args.threads} thread(s)",
        flush=True,
    )
    spec = get_model_spec("lenet5")
    precision = resolve_precision("auto", torch.device("cpu"))
    count = 60_000
    quiet = lambda message: None  # noqa: E731
    with tempfile.TemporaryDirectory() as scratch:
        fit(
            TrainConfig(
                model="lenet5",
                epochs=1,
                train_subset=2560,
                test_subset=1000,
                out=f"{scratch}/warm-up",
            ),
            log=quiet,
        )
        with profile(activities=[ProfilerActivity.CPU]) as profiler:
            result = fit(
                TrainConfig(model="lenet5", epochs=1, out=f"{scratch}/profiled"), log=quiet
            )
        wall = Run(result["run_dir"]).history()[0]["epoch_seconds"]  # training, not evaluation
    events = profiler.key_averages()
    phase_seconds = {
        event.key: event.cpu_time_total / 1e6 for event in events if event.key in PHASES
    }
    other = wall - sum(phase_seconds.values())
    print(
        f"epoch: {wall:.2f} s wall for {count:,} images "
        f"({count / wall:,.0f} images/s under the profiler), {precision}"
    )
    for name in PHASES:
        seconds = phase_seconds.get(name, 0.0)
        print(f"  {name:<10} {seconds:6.2f} s  {seconds / wall:6.1%}")
    print(
        f"  {'other':<10} {other:6.2f} s  {other / wall:6.1%}  (Python bookkeeping, progress bar)"
    )
    operators = sorted(
        (
            e
            for e in events
            if e.key not in PHASES and not e.key.startswith(("autograd::", "Optimizer"))
        ),
        key=lambda e: e.self_cpu_time_total,
        reverse=True,
    )[:8]
    print("slowest operators (self time):")
    for event in operators:
        share = event.self_cpu_time_total / 1e6 / wall
        print(f"  {event.key:<40} {event.self_cpu_time_total / 1e6:6.2f} s  {share:6.1%}")
    forward_macs = summarize(get_model("lenet5"), spec.input_size).total["macs"]
    training_macs = 3 * forward_macs * count
    ghz, cores = cpu_ghz(), facts["cores"]
    floors: dict[str, dict] = {}
    for name, (macs_per_cycle, assumes) in PEAKS.items():
        if peak_applies(name, facts):
            seconds = training_macs / (cores * ghz * 1e9 * macs_per_cycle)
            floors[name] = {"assumes": assumes, "seconds": seconds}
        else:
            floors[name] = {
                "assumes": assumes,
                "seconds": None,
                "not_computed": f"this CPU ({facts['cpu']}) is not {assumes}",
            }
    print(
        f"compute floor: {forward_macs:,} MACs per image forward, ×3 for a training step, "
        f"× {count:,} images = {training_macs / 1e9:.1f} GMACs per epoch; at "
        f"{cores} cores × {ghz:.2f} GHz:"
    )
    for name, floor in floors.items():
        if floor["seconds"] is None:
            print(f"  {name:<13} peak: not computed: {floor['not_computed']}")
            continue
        seconds = floor["seconds"]
        print(
            f"  {name:<13} peak: {seconds:.3f} s per epoch; this epoch is {wall / seconds:,.0f}× "
            f"that (assumes {floor['assumes']})"
        )
    path = save_results(
        __file__,
        {
            "threads": args.threads,
            "precision": precision,
            "epoch_seconds": wall,
            "phase_seconds": phase_seconds,
            "other_seconds": other,
            "operators": {e.key: e.self_cpu_time_total / 1e6 for e in operators},
            "forward_macs": forward_macs,
            "floor_seconds": floors,
            "cpu_ghz": ghz,
        },
    )
    print(f"saved {path.name}")


if __name__ == "__main__":
    main()
