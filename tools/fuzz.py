"""Throw generated inputs at everything a user or a web client controls, and count outcomes.

Eight targets, each fed valid inputs, mutated ones (bit flips, overwritten or inserted bytes,
boundary integers, truncation, splices), random bytes and hand-made hostile ones:

- the IDX reader (`convnet.data.idx.idx_to_tensor`), with raw and gzip files, and the image
  loader (`convnet.data.images.load_digit`): PNG, JPEG, GIF, BMP, TIFF, WebP, ICO, PPM and
  TGA in many modes, and headers that declare absurd sizes (their inputs: tools/fuzz_digits.py);
- POST /api/predict, called in-process through ASGI (no network) on the real app over
  untrained models, with hostile headers (Content-Length missing, wrong, huge or not a
  number; odd Content-Types), query strings and bodies cut into random chunks (those
  requests, the ASGI call and the judging of answers are in tools/fuzz_requests.py);
- and, in tools/fuzz_inputs.py: compressed files and archives with bombs (archive), photos of
  every format and extreme aspect ratios (photo), damaged config.json (config), weights with
  NaN, integers or other names (weights), and class folders with link loops (folder).

Each input ends in one of three outcomes: accepted, a clean rejection (a UserError, or a
4xx answer with a JSON {"error": …}), or a crash (any other exception, a 5xx, or a 4xx
without that JSON). A crash is a bug; the script exits 1 if there is one.

    python tools/fuzz.py [--count 30000] [--seconds 600] [--seed 0]

Counts, the slowest input per target and up to 20 crashing inputs (base64) go to
tools/fuzz.json beside this script.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import platform
import random
import shutil
import sys
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path

import fuzz_inputs
import torch
from fuzz_digits import (
    BOUNDARY_INTEGERS,
    hostile_idx,
    hostile_image,
    stroke_png,
    try_idx,
    try_image,
    valid_idx,
    valid_image,
    valid_image_png,
)
from fuzz_requests import call_app, judge_reply, predict_request, untrained_app
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from common import save_results  # noqa: E402  (stamps commit, command line, machine, load)

RESULTS = Path(__file__).with_suffix(".json")
TARGETS = ("idx", "image", "predict", "archive", "photo", "config", "weights", "folder")
# target -> (valid input, hostile input) makers of tools/fuzz_inputs.py
MAKERS = {
    "archive": (fuzz_inputs.valid_archive, fuzz_inputs.hostile_archive),
    "photo": (fuzz_inputs.valid_photo, fuzz_inputs.hostile_photo),
    "config": (fuzz_inputs.valid_config, fuzz_inputs.hostile_config),
    "weights": (fuzz_inputs.valid_weights, fuzz_inputs.hostile_weights),
}
OUTCOMES = ("accepted", "rejected", "crash")
MAX_CRASHES_KEPT = 20


# --- mutation ------------------------------------------------------------------------------


def mutate(rng: random.Random, data: bytes, pool: list[bytes]) -> bytes:
    """One to four random edits of `data`; `pool` supplies material for splices."""
    data = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        edit = rng.randrange(8)
        position = rng.randrange(len(data) + 1)
        if edit == 0 and data:  # flip bits
            for _ in range(rng.randint(1, 8)):
                index = rng.randrange(len(data))
                data[index] ^= 1 << rng.randrange(8)
        elif edit == 1 and data:  # overwrite with random bytes
            size = rng.randint(1, 16)
            data[position : position + size] = rng.randbytes(size)
        elif edit == 2:  # a boundary integer, big- or little-endian, 1, 2 or 4 bytes wide
            width = rng.choice([1, 2, 4])
            value = rng.choice(BOUNDARY_INTEGERS) % (256**width)
            order = rng.choice(["big", "little"])
            data[position : position + width] = value.to_bytes(width, order)
        elif edit == 3:  # truncate
            del data[position:]
        elif edit == 4:  # insert random bytes
            data[position:position] = rng.randbytes(rng.randint(1, 64))
        elif edit == 5 and data:  # delete a slice
            del data[position : position + rng.randint(1, 32)]
        elif edit == 6 and data:  # duplicate a slice
            start = rng.randrange(len(data))
            data[position:position] = data[start : start + rng.randint(1, 64)]
        elif edit == 7 and pool:  # splice with another input
            other = rng.choice(pool)
            cut = rng.randrange(len(other) + 1)
            data = data[:position] + bytearray(other[cut:])
    return bytes(data)


def family_input(
    rng: random.Random, valid: Callable[[], bytes], hostile: Callable[[], bytes], pool: list[bytes]
) -> tuple[str, bytes]:
    """An input of one family: valid, mutated valid, hostile, mutated hostile or random."""
    family = rng.choices(
        ["valid", "mutated", "hostile", "mutated hostile", "random"], weights=[10, 50, 15, 15, 10]
    )[0]
    if family == "random":
        return family, rng.randbytes(rng.choice([0, 1, 4, 8, 16, 64, 512, 4096]))
    data = valid() if family in ("valid", "mutated") else hostile()
    if family.startswith("mutated"):
        data = mutate(rng, data, pool)
    if len(pool) < 64:
        pool.append(data)
    else:
        pool[rng.randrange(64)] = data
    return family, data


# --- the run -------------------------------------------------------------------------------


def short_traceback(error: BaseException) -> str:
    """The exception and the innermost frames, with file names only (no paths)."""
    frames = traceback.extract_tb(error.__traceback__)[-3:]
    where = " < ".join(f"{Path(f.filename).name}:{f.lineno}" for f in reversed(frames))
    return f"{type(error).__name__}: {str(error)[:300]} (at {where})"


async def fuzz(count: int, seconds: float, seed: int) -> dict:
    rng = random.Random(seed)
    app = untrained_app()
    pools: dict[str, list[bytes]] = {target: [] for target in TARGETS}
    counts = {target: Counter() for target in TARGETS}
    by_family: dict[str, Counter] = {target: Counter() for target in TARGETS}
    slowest = {target: {"seconds": 0.0} for target in TARGETS}
    crashes: list[dict] = []
    scratch = fuzz_inputs.scratch_folder()  # weights files and folder trees, removed at the end
    started = time.perf_counter()
    for index in range(count):
        if time.perf_counter() - started > seconds:
            break
        target = TARGETS[index % len(TARGETS)]
        input_started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns about some broken files it reads
            if target == "idx":
                family, data = family_input(
                    rng, lambda: valid_idx(rng), lambda: hostile_idx(rng), pools["idx"]
                )
            elif target == "image":
                family, data = family_input(
                    rng, lambda: valid_image(rng), lambda: hostile_image(rng), pools["image"]
                )
            elif target in MAKERS:
                valid, hostile = MAKERS[target]
                family, data = family_input(
                    rng, partial(valid, rng), partial(hostile, rng), pools[target]
                )
            elif target == "folder":
                family, plan = "generated", fuzz_inputs.folder_tree(rng, scratch)
                data = json.dumps(plan).encode()
            else:
                family, headers, query, chunks = predict_request(
                    rng,
                    lambda: family_input(
                        rng,
                        lambda: valid_image_png(rng),
                        lambda: hostile_image(rng),
                        pools["predict"],
                    )[1],
                    lambda: stroke_png(rng),
                )
                data = b"".join(chunks)
            try:
                if target == "idx":
                    outcome = try_idx(data)
                elif target == "image":
                    outcome = try_image(data)
                elif target == "weights":
                    outcome = fuzz_inputs.try_weights(data, scratch)
                elif target == "folder":
                    outcome = fuzz_inputs.try_folder(plan, scratch)
                elif target in MAKERS:
                    outcome = getattr(fuzz_inputs, f"try_{target}")(data)
                else:
                    outcome = judge_reply(*await call_app(app, headers, query, chunks))
            except Exception as error:  # everything that is not a clean answer is a crash
                outcome = "crash"
                if len(crashes) < MAX_CRASHES_KEPT:
                    crashes.append(
                        {
                            "target": target,
                            "family": family,
                            "error": short_traceback(error),
                            "input_base64": base64.b64encode(data[:2048]).decode(),
                            "input_bytes": len(data),
                        }
                    )
        elapsed = time.perf_counter() - input_started
        if elapsed > slowest[target]["seconds"]:
            slowest[target] = {"seconds": round(elapsed, 4), "family": family, "bytes": len(data)}
        counts[target][outcome] += 1
        by_family[target][f"{family}: {outcome}"] += 1
    total_seconds = time.perf_counter() - started
    shutil.rmtree(scratch, ignore_errors=True)
    totals = Counter()
    for target in TARGETS:
        totals.update(counts[target])
    return {
        "seed": seed,
        "inputs": sum(totals.values()),
        "seconds": round(total_seconds, 1),
        "stopped_by_time_limit": sum(totals.values()) < count,
        "totals": {outcome: totals[outcome] for outcome in OUTCOMES},
        "by_target": {t: {o: counts[t][o] for o in OUTCOMES} for t in TARGETS},
        "by_family": {t: dict(sorted(by_family[t].items())) for t in TARGETS},
        "slowest_input": slowest,
        "crashes": crashes,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "pillow": Image.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=30_000, help="inputs in all (≥ 10,000)")
    parser.add_argument("--seconds", type=float, default=600, help="stop after this long")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    result = asyncio.run(fuzz(args.count, args.seconds, args.seed))
    save_results(__file__, result)
    print(f"{result['inputs']:,} inputs in {result['seconds']} s (seed {result['seed']})")
    print(f"{'target':<10}{'accepted':>10}{'rejected':>10}{'crash':>8}")
    for target, row in result["by_target"].items():
        print(f"{target:<10}{row['accepted']:>10,}{row['rejected']:>10,}{row['crash']:>8,}")
    totals = result["totals"]
    print(f"{'total':<10}{totals['accepted']:>10,}{totals['rejected']:>10,}{totals['crash']:>8,}")
    for crash in result["crashes"][:5]:
        print(f"crash in {crash['target']} ({crash['family']}): {crash['error']}", file=sys.stderr)
    print(f"saved {RESULTS.name}")
    return 1 if totals["crash"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
