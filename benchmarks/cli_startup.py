"""How fast the command line starts, against importing torch on the same machine (issue 18).

In one run, times `python -c "import torch"`, `convnet --help`, `convnet data list` and
`convnet train --help` as fresh processes, one of each per round in a rotating order (so a
change of load falls on all of them alike), after one untimed warm-up round; reports the
median of each and its ratio to importing torch. Target: each convnet command takes at most
0.3× the time of importing torch, which none of them should need. Timed beside them, not
judged: `import torch, torchvision`, and a whole scoring command, `convnet evaluate lenet5`
on 1,000 MNIST test digits (random weights, one thread), which imports torch but not
torchvision (convnet imports it only to build torchvision's own networks).

    python benchmarks/cli_startup.py [--rounds 7]

Results and the machine's facts (with its load average: every figure is a fresh process's
start, which a busy machine slows) go to benchmarks/cli_startup.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import ROOT, hardware, hardware_line, judge, load_average, save_results  # noqa: E402

TARGET_RATIO = 0.3
BASELINE = "import torch"
COMMANDS: dict[str, list[str]] = {
    BASELINE: ["-c", "import torch"],
    "convnet --help": ["-m", "convnet", "--help"],
    "convnet data list": ["-m", "convnet", "data", "list"],
    "convnet train --help": ["-m", "convnet", "train", "--help"],
}
# Timed, not judged ("{weights}": a file the script writes).
CONTEXT: dict[str, list[str]] = {
    "import torch, torchvision": ["-c", "import torch, torchvision"],
    "convnet evaluate lenet5": ["-m", "convnet", "evaluate", "lenet5", "--weights", "{weights}",
                                "--dataset", "mnist", "--test-subset", "1000", "--threads", "1"],
}  # fmt: skip


def environment() -> dict[str, str]:
    """This checkout's convnet first on the path, whatever is installed."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}


def seconds_to_run(arguments: list[str], env: dict[str, str]) -> float:
    """Wall-clock seconds of one fresh `python ARGUMENTS`, which must succeed."""
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, *arguments],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"python {' '.join(arguments)} failed:\n{result.stderr[-2000:]}")
    return elapsed


def measure(rounds: int, commands: dict[str, list[str]]) -> dict[str, list[float]]:
    """Seconds of each command in each round; round r starts with command r (mod count)."""
    env = environment()
    names = list(commands)
    for name in names:  # warm-up: the files in the page cache, as for a user's second call
        seconds_to_run(commands[name], env)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(rounds):
        order = names[round_index % len(names) :] + names[: round_index % len(names)]
        for name in order:
            times[name].append(seconds_to_run(commands[name], env))
    return times


def with_weights(folder: Path) -> dict[str, list[str]]:
    """COMMANDS and CONTEXT, "{weights}" replaced by random LeNet-5 weights in `folder`."""
    import torch

    from convnet.engine.checkpoint import save_weights
    from convnet.models import get_model

    torch.manual_seed(0)
    weights = folder / "lenet5.safetensors"
    save_weights(weights, get_model("lenet5"))
    return {
        name: [str(weights) if word == "{weights}" else word for word in arguments]
        for name, arguments in {**COMMANDS, **CONTEXT}.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="timed runs of each command")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    facts = hardware()
    print(hardware_line(facts), flush=True)
    with tempfile.TemporaryDirectory() as folder:
        times = measure(args.rounds, with_weights(Path(folder)))
    medians = {name: statistics.median(values) for name, values in times.items()}
    baseline = medians[BASELINE]
    # Per round too: the ratio within one round, where the load was the same for both.
    paired = {
        name: statistics.median(t / b for t, b in zip(values, times[BASELINE], strict=True))
        for name, values in times.items()
    }
    rows = []
    print(f"{'command':<26}{'median s':>10}{'min s':>8}{'max s':>8}{'× torch':>9}{'paired':>8}")
    for name, values in times.items():
        ratio = medians[name] / baseline
        rows.append(
            {
                "command": name,
                "seconds": [round(v, 4) for v in values],
                "median_seconds": round(medians[name], 4),
                "ratio_to_import_torch": round(ratio, 3),
                "paired_ratio_to_import_torch": round(paired[name], 3),
            }
        )
        print(
            f"{name:<26}{medians[name]:>10.3f}{min(values):>8.3f}{max(values):>8.3f}"
            f"{ratio:>9.2f}{paired[name]:>8.2f}"
        )
    print(f"load average now {load_average()}")
    targets = judge(
        {
            f"{name}: at most {TARGET_RATIO}× the time of importing torch (median)": medians[name]
            / baseline
            <= TARGET_RATIO
            for name in COMMANDS
            if name != BASELINE
        }
    )
    document = {
        "settings": {"rounds": args.rounds, "warm_up_rounds": 1, "target_ratio": TARGET_RATIO},
        "commands": rows,
        "targets": targets,
    }
    path = save_results(__file__, document)
    print(f"saved {path.relative_to(ROOT)}")
    return 0 if all(target["met"] for target in targets) else 1


if __name__ == "__main__":
    raise SystemExit(main())
