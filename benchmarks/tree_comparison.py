"""LeNet-5 training of this checkout against another convnet checkout (train_speed.py's
`--compare-with TREE`): both through their command line (the fast run, `convnet train lenet5
--epochs N ... --seed S --json`), interleaved run by run, so an engine change is measured
against the code before it in the same run, on the same machine."""

from __future__ import annotations

import sys
from pathlib import Path

from common import commit_of, median_spread
from mnist_tutorial import convnet_figures

from convnet.engine.run import Run


def tree_environment(tree: Path, extensions: Path) -> dict:
    """The environment of a subprocess running the convnet in `tree`: its compiled kernels in
    a cache of its own, so that two trees whose kernel sources differ do not rebuild them in
    turn inside the timed epochs (one import here builds them before any timing)."""
    import os
    import subprocess

    environment = {
        **os.environ,
        "PYTHONPATH": str(tree),
        "TORCH_EXTENSIONS_DIR": str(extensions),
    }
    warm_up = "from convnet.models.pooling import kernel_status; kernel_status()"
    subprocess.run([sys.executable, "-c", warm_up], cwd=tree, env=environment, check=True)
    return environment


def command_line_run(
    tree: Path,
    seed: int,
    flags: list[str],
    out: Path,
    environment: dict,
    threads: int | None = None,
) -> dict:
    """`convnet train lenet5 FLAGS --seed S [--threads T]` of the convnet in `tree`, in a
    subprocess with `environment` (`tree_environment`)."""
    import json
    import subprocess

    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "convnet",
            "train",
            "lenet5",
            *flags,
            "--seed",
            str(seed),
            "--out",
            str(out),
            "--json",
            *(["--threads", str(threads)] if threads else []),
        ],
        cwd=tree,
        env=environment,
        capture_output=True,
        text=True,
        check=True,
        timeout=3600,
    )
    # Run.history reads an older tree's metrics.csv too (its "test_error" as "eval_error")
    return convnet_figures(json.loads(completed.stdout), Run(out).history())


def compare(
    tree: Path, seeds: list[int], flags: list[str], scratch: Path, threads: int | None = None
) -> dict:
    """This checkout against `tree`, alternating run by run; which goes first alternates too,
    so a machine that speeds up or slows down during the benchmark favours neither."""
    here = Path(__file__).resolve().parent.parent
    runs: dict[str, list[dict]] = {"this": [], "other": []}
    environments = {
        root: tree_environment(root, scratch / f"extensions-{name}")
        for name, root in (("this", here), ("other", tree))
    }
    for position, seed in enumerate(seeds):
        pair = [("this", here), ("other", tree)]
        for name, root in pair if position % 2 == 0 else pair[::-1]:
            out = scratch / f"{name}-{seed}"
            runs[name].append(command_line_run(root, seed, flags, out, environments[root], threads))
            print(
                f"  seed {seed}, {name}: {runs[name][-1]['images_per_second']:,.0f} images/s, "
                f"time to 99% {runs[name][-1]['time_to_99']}",
                flush=True,
            )
    this = [r["images_per_second"] for r in runs["this"]]
    other = [r["images_per_second"] for r in runs["other"]]
    ratio = [a / b for a, b in zip(this, other, strict=True)]
    print(
        f"this checkout ({commit_of(here)[:12]}): {median_spread(this)} images/s; "
        f"{tree} ({commit_of(tree)[:12]}): {median_spread(other)} images/s; "
        f"ratio {median_spread(ratio)}"
    )
    for name in runs:
        times = [r["time_to_99"] for r in runs[name]]
        errors = [100 * r["test_error"] for r in runs[name]]
        print(f"  {name}: time to 99% {times} s; test error {median_spread(errors)}%")
    return {"other_tree": str(tree), "other_commit": commit_of(tree), "runs": runs, "ratio": ratio}
