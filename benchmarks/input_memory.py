"""Peak memory of the command line on inputs at the edges: a gzip bomb among a data set's
source files, a 1×8000 PNG, a 108-megapixel JPEG, and `convnet predict` over many files.

Each case is one `python -m convnet …` process; its peak resident memory is the kernel's
(`wait4`'s ru_maxrss), its exit status and last line of standard error are kept. Every
process runs under an address-space cap (--cap-gib, 8 by default) so that a case that would
ask for tens of gigabytes fails at the cap instead of taking the machine.

    python benchmarks/input_memory.py [--files 300 3000] [--cap-gib 8]

Measures whichever convnet `python -m convnet` imports (PYTHONPATH decides), so the same
script measures an older checkout for a before/after comparison; writes
benchmarks/input_memory.json (or --out).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))

from common import hardware, hardware_line, save_results  # noqa: E402

BOMB_BYTES = 1_500_000_000  # zeros: gzip packs them about 1,030 to 1, into about 1.5 MB


def measure(arguments: list[str], cap_bytes: int, scratch: str) -> dict:
    """Run `python -m convnet ARGUMENTS`; its peak RSS (MiB), exit status, seconds, last line."""

    def capped() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (cap_bytes, cap_bytes))

    started = time.perf_counter()
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(
            [sys.executable, "-m", "convnet", *arguments],
            stdout=subprocess.DEVNULL,
            stderr=errors,
            preexec_fn=capped,
        )
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        errors.seek(0)
        lines = [line for line in errors.read().decode(errors="replace").splitlines() if line]
    return {
        "exit_status": process.returncode,
        "peak_mib": round(usage.ru_maxrss / 1024, 1),
        "seconds": round(time.perf_counter() - started, 2),
        "last_line": lines[-1][:300].replace(scratch, "SCRATCH") if lines else "",
    }


def gzip_bomb(folder: Path) -> None:
    """train-images-idx3-ubyte.gz: 1.5 GB of zeros, compressed."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = bytes(2**24)
    with (folder / "train-images-idx3-ubyte.gz").open("wb") as handle:
        for _ in range(BOMB_BYTES // len(chunk)):
            handle.write(packer.compress(chunk))
        handle.write(packer.flush())


def photo(width: int, height: int) -> Image.Image:
    """A smooth colour photo-like image (gradients), cheap to make at any size."""
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    red = (x + 0 * y).astype(np.uint8)
    green = (y + 0 * x).astype(np.uint8)
    blue = ((x + y) / 2).astype(np.uint8)
    return Image.fromarray(np.stack([red, green, blue], axis=2), "RGB")


def weights(path: Path, classes: int) -> Path:
    import torchvision
    from safetensors.torch import save_file

    torch.manual_seed(0)
    save_file(torchvision.models.resnet18(num_classes=classes).state_dict(), str(path))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, nargs="+", default=[300, 3000])
    parser.add_argument("--cap-gib", type=float, default=8.0)
    parser.add_argument("--out", default=None, help="results file name beside this script")
    parser.add_argument(
        "--label", default="this checkout", help="what was measured (e.g. the commit before)"
    )
    args = parser.parse_args()
    cap = int(args.cap_gib * 2**30)
    facts = hardware()
    print(f"# Peak memory at the edges — {hardware_line(facts)}", flush=True)
    cases: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        source = root / "source"
        source.mkdir()
        gzip_bomb(source)
        bomb_size = (source / "train-images-idx3-ubyte.gz").stat().st_size
        tall = root / "tall.png"
        Image.new("L", (1, 8000), 128).save(tall, optimize=True)
        big = root / "big.jpg"
        photo(12_000, 9_000).save(big, quality=90)
        folder = root / "folder"
        for name in ("a", "b"):
            (folder / name).mkdir(parents=True)
            photo(500, 375).save(folder / name / "small.jpg", quality=90)
        os.link(big, folder / "a" / "big.jpg")
        imagenet, two = weights(root / "w1000.safetensors", 1000), weights(root / "w2.st", 2)
        many = root / "many"
        many.mkdir()
        small = photo(500, 375)
        for index in range(max(args.files)):
            small.save(many / f"{index:05d}.jpg", quality=90)
        files = sorted(str(path) for path in many.iterdir())
        fetch = f"data fetch mnist --source {source} --data-dir {root / 'cache'}"
        predict = f"predict resnet18 --weights {imagenet}"
        runs = {
            "gzip_bomb": fetch.split(),
            "tall_png_predict": [*predict.split(), str(tall)],
            "jpeg_108mp_predict": [*predict.split(), str(big)],
            "jpeg_108mp_evaluate": (
                f"evaluate resnet18 --weights {two} --data {folder} --workers 0".split()
            ),
        }
        for count in args.files:
            runs[f"predict_{count}_files"] = [*predict.split(), *files[:count]]
        for name, arguments in runs.items():
            cases[name] = measure(arguments, cap, scratch)
            print(f"{name}: {cases[name]}", flush=True)
        cases["gzip_bomb"]["input_bytes"] = bomb_size
        cases["tall_png_predict"]["input_bytes"] = tall.stat().st_size
        cases["jpeg_108mp_predict"]["input_bytes"] = big.stat().st_size
    document = {"measured": args.label, "cap_gib": args.cap_gib, "cases": cases}
    print(save_results(__file__, document, args.out))


if __name__ == "__main__":
    main()
