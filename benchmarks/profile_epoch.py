"""Where one epoch of `convnet train lenet5` spends its time, and how far it is from the
compute floor (issue 8).

Runs the engine's own `fit` for one epoch (lenet5 defaults: batch 128, augmentation, bf16
where native, channels-last) over the 60,000 MNIST training images under torch.profiler, and
prints the wall time of its named phases (data, forward, backward, optimizer; the rest is
Python bookkeeping; the epoch's evaluation is not counted), the operators that take longest, and the floor: multiply-accumulates of one
training step (forward + two backward products ≈ 3 × forward) × images ÷ the machine's
peak in fp32 and bf16 as benchmarks/peak.py measures it on this CPU (its instructions timed,
not a clock rate and a MAC count per cycle typed in for one vendor's chips).
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
from peak import peak  # noqa: E402

from convnet.analysis.summary import summarize  # noqa: E402
from convnet.data.datasets import fetch_dataset  # noqa: E402
from convnet.engine.config import TrainConfig  # noqa: E402
from convnet.engine.device import resolve_precision  # noqa: E402
from convnet.engine.run import Run  # noqa: E402
from convnet.engine.train import fit  # noqa: E402
from convnet.models import get_model, get_model_spec  # noqa: E402

PHASES = ("data", "forward", "backward", "optimizer")


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
    cores = args.threads
    floors = {}
    for name in ("fp32", "bf16"):
        rate = peak(name, cores)  # GMAC/s on the threads used
        floors[name] = {"peak_gmacs_per_second": rate, "seconds": training_macs / (rate * 1e9)}
    print(
        f"compute floor: {forward_macs:,} MACs per image forward, ×3 for a training step, "
        f"× {count:,} images = {training_macs / 1e9:.1f} GMACs per epoch; on {cores} cores "
        "at the measured peak (benchmarks/peak.py):"
    )
    for name, floor in floors.items():
        seconds = floor["seconds"]
        print(
            f"  {name:<5} {floor['peak_gmacs_per_second']:.0f} GMAC/s: {seconds:.3f} s per epoch; "
            f"this epoch is {wall / seconds:,.0f}× that ({seconds / wall:.1%} of the peak)"
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
        },
    )
    print(f"saved {path.name}")


if __name__ == "__main__":
    main()
