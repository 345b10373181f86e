"""The figures of docs/lecture.md and docs/benchmarks.md from the lecture's experiments and `convnet train mlp`, each saved
as JSON beside this script (benchmarks/experiment_NAME.json) with its commit and machine.

Each figure runs the command a user would, with --json where it has one, in a fresh
temporary folder (nothing cached, so every run trains what it needs):

    python benchmarks/experiment_figures.py shift        # claim 1: test digits 0 and 3613
    python benchmarks/experiment_figures.py cost         # claim 6: the cost table (~15 s)
    python benchmarks/experiment_figures.py mlp          # `convnet train mlp`, its defaults
    python benchmarks/experiment_figures.py lecture      # `convnet report lecture`, timed
    python benchmarks/experiment_figures.py invariance   # claims 1, 3, 5: 5 epochs (~20 min)
    python benchmarks/experiment_figures.py evolution    # claim 8 in miniature (~40 min)
    python benchmarks/experiment_figures.py evolution-brief  # the same, 1 epoch on 10,000
    python benchmarks/experiment_figures.py pooling      # claim 3: 3 seeds × 3 poolings

Timings depend on the machine and its load; the saved JSON records both.
"""

from __future__ import annotations

import argparse
import html
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import hardware, hardware_line, load_average, save_results  # noqa: E402


def convnet(*arguments: str) -> tuple[dict | None, str, float]:
    """`python -m convnet ARGUMENTS`: its JSON (when it prints one), its log, its seconds."""
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "convnet", *arguments], capture_output=True, text=True
    )
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"convnet {' '.join(arguments)} failed:\n{result.stderr[-3000:]}")
    document = json.loads(result.stdout) if result.stdout.lstrip().startswith("{") else None
    return document, result.stderr, round(seconds, 1)


def shift(scratch: Path) -> dict:
    digits = {}
    for index in (0, 3613):
        figure = str(scratch / f"shift-{index}.png")
        document, _, _ = convnet(
            "experiment", "shift", "--index", str(index), "--json", "--figure", figure
        )
        document.pop("figure", None)
        digits[str(index)] = document
        print(
            f"test digit #{index} ({document['label']}): {document['changed']} of "
            f"{document['inputs']} inputs change ({document['black_to_white']} + "
            f"{document['white_to_black']})"
        )
    stats = digits["0"]["test_set"]
    print(
        f"all {stats['count']:,} test digits: {stats['mean']:.1f} ± {stats['std']:.1f} "
        f"(min {stats['min']}, max {stats['max']})"
    )
    return {"digits": digits}


def cost(scratch: Path) -> dict:
    document, _, seconds = convnet(
        "experiment",
        "cost",
        "--models",
        "lenet5,mlp_60k",
        "--json",
        "--figure",
        str(scratch / "cost.png"),
    )
    document.pop("figure", None)
    print(json.dumps(document, indent=1)[:3000])
    return {"seconds": seconds, "result": document}


def mlp(scratch: Path) -> dict:
    document, _, seconds = convnet("train", "mlp", "--out", str(scratch / "mlp"), "--json")
    summary = {
        key: document.get(key)
        for key in (
            "model",
            "epochs",
            "top1_error",
            "precision",
            "train_seconds",
            "images_per_second",
            "device",
        )
    }
    print(
        f"mlp: test error {document['top1_error']:.2%} after {document['epochs']} epochs, "
        f"{document['train_seconds']:.0f} s of training"
    )
    return {"seconds": seconds, "result": summary}


def lecture(scratch: Path) -> dict:
    page, runs = scratch / "lecture" / "lecture.html", scratch / "runs"
    _, log, seconds = convnet("report", "lecture", "--out", str(page), "--runs-dir", str(runs))
    # The same page in Korean, from the same runs (reused: only claim 6's timing runs again).
    korean = scratch / "lecture-ko" / "lecture.html"
    _, _, korean_seconds = convnet(
        "report", "lecture", "--lang", "ko", "--out", str(korean), "--runs-dir", str(runs)
    )
    # Each section: <h2>Claim N</h2> … <p class='verdict'><span …>VERDICT</span> why</p>
    found = re.findall(
        r"<h2>Claim (\d+)</h2>.*?<p class='verdict'><span[^>]*>([^<]*)</span>",
        page.read_text(),
        re.S,
    )
    verdicts = {number: html.unescape(verdict) for number, verdict in found}
    trained = {}
    for results in sorted(runs.rglob("results.json")):
        run = json.loads(results.read_text())
        trained[results.parent.name] = {
            key: run.get(key)
            for key in ("model", "top1_error", "epochs", "num_examples", "train_seconds")
        }
    print(f"convnet report lecture: {seconds:.0f} s, nothing cached; verdicts {verdicts}")
    for name, run in trained.items():
        print(f"  {name}: {run['model']} test error {run['top1_error']:.2%}")
    return {
        "seconds": seconds,
        "korean_seconds": korean_seconds,
        "verdicts": verdicts,
        "trained_runs": trained,
        "log": log.splitlines()[-40:],
    }


def invariance(scratch: Path) -> dict:
    document, _, seconds = convnet(
        "experiment",
        "invariance",
        "--epochs",
        "5",
        "--json",
        "--runs-dir",
        str(scratch / "runs"),
        "--figure",
        str(scratch / "invariance.png"),
    )
    document.pop("figure", None)
    print(json.dumps(document, indent=1)[:4000])
    return {"seconds": seconds, "result": document}


def evolution(scratch: Path, *brief: str) -> dict:
    document, _, seconds = convnet(
        "experiment",
        "evolution",
        "--threads",
        "2",
        *brief,
        "--json",
        "--runs-dir",
        str(scratch / "runs"),
        "--figure",
        str(scratch / "evolution.png"),
    )
    document.pop("figure", None)
    for row in document["models"]:
        print(
            f"{row['model']:<16} depth {row['depth']:>3}  test accuracy {row['test_accuracy']:.2%}"
            f"  {row['train_seconds']:.0f} s  {'' if row['passes_floor'] else 'UNDER THE FLOOR'}"
        )
    print(f"under the {document['accuracy_floor']} floor: {document['short_of_floor']}")
    return {"seconds": seconds, "command_options": list(brief), "result": document}


def evolution_brief(scratch: Path) -> dict:
    """The evolution in miniature at this commit: 1 epoch on 10,000 images, 2,000 tested."""
    return evolution(scratch, "--epochs", "1", "--train-subset", "10000", "--test-subset", "2000")


def pooling(scratch: Path) -> dict:
    """Claim 3 as the lecture report measures it: lenet5 with max pooling, average pooling
    and a stride-2 convolution, 3 seeds each, 3 epochs on all 60,000 images, the same
    recipe; sweeps over the first 2,000 test digits."""
    document, _, seconds = convnet(
        "experiment",
        "invariance",
        "--models",
        "lenet5",
        "--variants",
        "plain,average,ablation",
        "--seeds",
        "3",
        "--epochs",
        "3",
        "--test-subset",
        "2000",
        "--distortions",
        "translate_x,translate_y,rotate",
        "--json",
        "--runs-dir",
        str(scratch / "runs"),
        "--figure",
        str(scratch / "invariance.png"),
    )
    for kind, measures in document["pooling"].items():
        cells = ", ".join(
            f"{name} {m['mean']:.2%} ({m['min']:.2%}–{m['max']:.2%})"
            for name, m in measures.items()
        )
        print(f"{kind:<9} {cells}")
    return {
        "seconds": seconds,
        "pooling": document["pooling"],
        "variants": [
            {key: v[key] for key in ("label", "seed", "train_seconds", "clean_accuracy")}
            for v in document["variants"]
        ],
    }


FIGURES = {
    "shift": shift,
    "cost": cost,
    "mlp": mlp,
    "lecture": lecture,
    "invariance": invariance,
    "evolution": evolution,
    "evolution-brief": evolution_brief,
    "pooling": pooling,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("figure", choices=sorted(FIGURES))
    parser.add_argument(
        "--keep", metavar="DIR", help="copy the pages, figures and runs made into DIR"
    )
    args = parser.parse_args()
    print(f"# {args.figure} — {hardware_line(hardware())}", flush=True)
    with tempfile.TemporaryDirectory(prefix=f"convnet-{args.figure}-") as scratch:
        document = FIGURES[args.figure](Path(scratch))
        if args.keep:
            shutil.copytree(scratch, args.keep, dirs_exist_ok=True)
    name = args.figure.replace("-", "_")
    path = save_results(__file__, document, name=f"experiment_{name}.json")
    print(f"# load average {load_average()} at the end; saved {path.name}")
    return 0 if all(target["met"] for target in document.get("targets", [])) else 1


if __name__ == "__main__":
    raise SystemExit(main())
