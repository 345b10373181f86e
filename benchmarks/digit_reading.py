"""How many drawn digits `convnet predict` reads right, by pen, canvas and light.

The digits 0–9 are drawn by tests/helpers/digit_drawings.py (strokes with a round pen, paper
grain, a light gradient or a corner shadow) and read by a LeNet-5 trained for one epoch on MNIST
(`--run RUN_DIR` to use another run). Printed and saved: right out of 10 for each
condition, and the predictions. Run: `python benchmarks/digit_reading.py [--run RUN_DIR]`.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
from pathlib import Path

import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "tests" / "helpers"))

from common import hardware, hardware_line, save_results  # noqa: E402
from digit_drawings import CONDITIONS  # noqa: E402

from convnet.data.images import load_digit  # noqa: E402
from convnet.data.transforms import to_model_input  # noqa: E402
from convnet.engine.config import TrainConfig  # noqa: E402
from convnet.engine.evaluate import predict_logits  # noqa: E402
from convnet.engine.run import load_run  # noqa: E402
from convnet.engine.train import fit  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", metavar="RUN_DIR", help="a trained digit run (default: train one)")
    args = parser.parse_args()
    facts = hardware()
    print(f"# Drawn digits read by convnet predict — {hardware_line(facts)}", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        run_dir = args.run
        if run_dir is None:
            run_dir = fit(
                TrainConfig(model="lenet5", epochs=1, out=f"{scratch}/run"),
                log=lambda message: None,
            )["run_dir"]
        loaded = load_run(run_dir)
    results = {}
    for condition, draw in CONDITIONS.items():
        digits = []
        for digit in range(10):
            buffer = io.BytesIO()
            Image.fromarray(draw(digit)).save(buffer, format="PNG")
            digits.append(load_digit(buffer.getvalue()))
        inputs = to_model_input(torch.stack(digits), loaded.input_size)
        logits = predict_logits(
            loaded.model, inputs, loaded.normalization, torch.device("cpu"), "fp32"
        )
        predicted = logits.argmax(1).tolist()
        right = sum(p == d for d, p in enumerate(predicted))
        results[condition] = {"right": right, "predicted": predicted}
        print(f"{condition:<38} {right:>2}/10  {predicted}")
    total = sum(entry["right"] for entry in results.values())
    print(f"{'all':<38} {total}/{10 * len(results)}")
    path = save_results(
        __file__,
        {
            "run": str(args.run or "trained now, 1 epoch"),
            "results": results,
            "right": total,
            "of": 10 * len(results),
        },
    )
    print(f"saved {path.name}")


if __name__ == "__main__":
    main()
