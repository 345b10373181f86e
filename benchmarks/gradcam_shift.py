"""How far the page's heat centres move when the digit moves: Grad-CAM on the CNN's C3 and
the ordinary network's input saliency, as `convnet serve` computes them (the server's own
`apply_view` and `explanations`), over the first 100 MNIST test digits.

Each digit is shifted by ±2 and ±4 px along each axis; for each shift, the centre of mass of
each network's heat moves along that axis by some number of pixels, and the ratio of that
move to the shift is recorded (1: the heat follows the digit exactly; 0: it stays put).
Saved: per network, axis and shift size, the mean, median, standard deviation and quartiles
of the ratio, and the mean over all shifts. The coordinates are (row, column) in pixels of
the 28×28 picture, as `/api/predict` returns them.

    python benchmarks/gradcam_shift.py --run runs/demo    # the CNN `make demo` trains
    python benchmarks/gradcam_shift.py                     # trains lenet5's default recipe

The ordinary network is the mlp trained like the CNN (the server's partner, found under the
CNN run's folder or trained into a temporary one), so the pair is the page's default.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from common import hardware, hardware_line, save_results  # noqa: E402

from convnet.data.datasets import load_dataset  # noqa: E402
from convnet.engine.config import TrainConfig  # noqa: E402
from convnet.engine.matching import partner_config  # noqa: E402
from convnet.engine.run import Run  # noqa: E402
from convnet.engine.train import fit  # noqa: E402
from convnet.serve.inference import View, apply_view, explanations  # noqa: E402
from convnet.serve.models import matching_run, serve_run  # noqa: E402
from convnet.serve.served import GIVEN, Origin, ServedModels  # noqa: E402

DIGITS = 100
SHIFTS = (-4, -2, 2, 4)
AXES = {"column": ("shift_x", 1), "row": ("shift_y", 0)}  # axis → view field, index in a centre


def quiet(message: str) -> None:
    pass


def summary(ratios: list[float]) -> dict:
    values = np.array(ratios)
    return {
        "count": len(ratios),
        "mean": round(float(values.mean()), 3),
        "median": round(float(np.median(values)), 3),
        "std": round(float(values.std()), 3),
        "quartiles": [round(float(q), 3) for q in np.percentile(values, [25, 75])],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", metavar="RUN_DIR", help="a LeNet-5 run (default: train one)")
    parser.add_argument("--digits", type=int, default=DIGITS, help="first test digits to use")
    args = parser.parse_args()
    facts = hardware()
    print(f"# Heat centres under shifts — {hardware_line(facts)}", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        cnn_run = (
            args.run
            or fit(TrainConfig(model="lenet5", out=f"{scratch}/lenet5"), log=quiet)["run_dir"]
        )
        reference = Run(cnn_run).read_config()
        wanted = partner_config(reference, "mlp")
        found, _ = matching_run(Path(cnn_run).resolve().parent, wanted)
        if found is None:
            print("training the mlp partner with the CNN's recipe …", flush=True)
            wanted.out = f"{scratch}/mlp"
            found = Run(fit(wanted, log=quiet)["run_dir"])
        models = ServedModels(
            serve_run("cnn", Path(cnn_run), Origin(GIVEN, Path(cnn_run).name)),
            serve_run("ordinary", found.path, Origin(GIVEN, found.path.name)),
        )
        for served in models.all():
            served.loaded.model.eval()
        test = load_dataset("mnist", "test")
        ratios = {
            role: {axis: {size: [] for size in (2, 4)} for axis in AXES}
            for role in ("cnn", "ordinary")
        }
        for index in range(args.digits):
            digit = test.images[index]
            still = explanations(models, apply_view(digit, View()), seed=index)
            for axis, (field, position) in AXES.items():
                for shift in SHIFTS:
                    seen = apply_view(digit, View(**{field: float(shift)}))
                    moved = explanations(models, seen, seed=index)
                    for role in ratios:
                        move = moved[role]["centre"][position] - still[role]["centre"][position]
                        ratios[role][axis][abs(shift)].append(move / shift)
        document = {
            "cnn_run": Path(cnn_run).name,
            "cnn_recipe": {
                k: getattr(reference, k)
                for k in ("model", "epochs", "augment", "train_subset", "seed")
            },
            "cnn_test_error": Run(cnn_run).test_error(),
            "ordinary_run": found.path.name,
            "ordinary_test_error": found.test_error(),
            "digits": args.digits,
            "shifts_px": list(SHIFTS),
            "coordinates": "(row, column) in pixels of the 28×28 picture, as /api/predict returns them",
            "methods": {"cnn": "Grad-CAM on C3", "ordinary": "input saliency"},
            "ratio": {
                role: {
                    axis: {f"{size}px": summary(values) for size, values in sizes.items()}
                    for axis, sizes in axes.items()
                }
                for role, axes in ratios.items()
            },
            "mean_ratio": {
                role: round(
                    statistics.fmean(
                        v for sizes in axes.values() for values in sizes.values() for v in values
                    ),
                    3,
                )
                for role, axes in ratios.items()
            },
        }
    for role, axes in document["ratio"].items():
        for axis, sizes in axes.items():
            for size, numbers in sizes.items():
                print(
                    f"{role:9s} {axis:7s} {size}: mean {numbers['mean']:.3f}, median {numbers['median']:.3f}, "
                    f"std {numbers['std']:.3f}"
                )
    print(f"mean ratio: {document['mean_ratio']}")
    path = save_results(__file__, document)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
