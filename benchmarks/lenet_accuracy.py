"""LeNet-5 on MNIST with convnet's default hyperparameters: test error and training time.

Targets (issue 2): test error ≤ 0.8% for `lenet5` and ≤ 1.0% for `lenet5_1998`, each within
10 minutes of training on a 2-core CPU. Published: 0.95% (0.8% with distortions), LeCun et
al. 1998, Fig. 9. Run: `python benchmarks/lenet_accuracy.py [--seeds 0 1 2] [--models …]`.
Results are saved beside this script as lenet_accuracy.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import hardware, hardware_line, save_results, spread  # noqa: E402

from convnet.data.datasets import fetch_dataset  # noqa: E402
from convnet.engine.train import TrainConfig, fit  # noqa: E402

TARGETS = {"lenet5": 0.008, "lenet5_1998": 0.010}
TIME_LIMIT_SECONDS = 600


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(TARGETS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    args = parser.parse_args()
    fetch_dataset("mnist")
    facts = hardware()
    print(f"# LeNet-5 accuracy benchmark — {hardware_line(facts)}")
    runs = []
    with tempfile.TemporaryDirectory() as scratch:
        for model in args.models:
            for seed in args.seeds:
                config = TrainConfig(
                    model=model, seed=seed, out=str(Path(scratch) / f"{model}-{seed}")
                )
                result = fit(config, log=lambda message: print(f"  {message}", file=sys.stderr))
                runs.append(
                    {
                        "model": model,
                        "seed": seed,
                        "test_error": result["top1_error"],
                        "train_seconds": result["train_seconds"],
                        "epochs": result["epochs"],
                        "precision": result["precision"],
                        "images_per_second": result["images_per_second"],
                    }
                )
                print(
                    f"{model} seed {seed}: test error {result['top1_error']:.2%} after "
                    f"{result['epochs']} epochs, {result['train_seconds']:.0f} s",
                    flush=True,
                )
    summary = {}
    print(f"\n{'model':<13}{'test error (%)':>24}{'train time (s)':>24}  target")
    for model in args.models:
        errors = [100 * run["test_error"] for run in runs if run["model"] == model]
        seconds = [run["train_seconds"] for run in runs if run["model"] == model]
        met = max(errors) <= 100 * TARGETS.get(model, 1) and max(seconds) <= TIME_LIMIT_SECONDS
        summary[model] = {
            "test_error_percent": errors,
            "train_seconds": seconds,
            "mean_error_percent": statistics.mean(errors),
            "target_met": met,
        }
        target = (
            f"≤ {100 * TARGETS[model]:.1f}% in ≤ {TIME_LIMIT_SECONDS} s" if model in TARGETS else ""
        )
        print(
            f"{model:<13}{spread(errors):>24}{spread(seconds):>24}  {target} "
            f"{'met' if met else 'NOT met'}"
        )
    # a run of some models only is saved beside the full one, not over it
    name = (
        None if set(args.models) == set(TARGETS) else f"lenet_accuracy_{'_'.join(args.models)}.json"
    )
    path = save_results(__file__, {"runs": runs, "summary": summary}, name)
    print(f"\nsaved {path.name}")


if __name__ == "__main__":
    main()
