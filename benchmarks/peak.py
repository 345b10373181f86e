"""The machine's measured peak: multiply-accumulates per CPU-second of one core in fp32, bf16
and int8, from the instructions themselves, and what the best library GEMM reaches
(`python benchmarks/peak.py`).

A "% of peak" elsewhere divides by these measured rates, not by a clock rate and a MAC count
per cycle typed in for one vendor's chips (a 2.60 GHz TSC and Intel's 32 fp32 MACs per
cycle made profile_epoch.py's share wrong on a Zen 4 core that runs at 3.5 GHz and does 16).

The instruction peak is benchmarks/peak.c, compiled here with the C compiler (`cc`): chains
of AVX-512 FMA (16 fp32 MACs each), `vdpbf16ps` (32 bf16) and `vpdpbusd` (64 int8) timed
in CPU seconds, so other programs sharing the cores lower it little. The library GEMM is a
square product of 2048 (`torch.mm`; int8: `torch._int_mm`), what oneDNN and MKL run closest to
the instructions. Without a C compiler or AVX-512 the GEMM rate stands in and is said.
Saved in benchmarks/peak.json with the machine and its load; other benchmarks call `peak()`,
which reads that file when it was measured on this CPU model, else measures.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from common import cpu_flags, hardware, hardware_line, save_results  # noqa: E402

SIZE = 2048  # square GEMM side: big enough that packing and threading overheads are ~1%
REPEATS = 5
SAVED = Path(__file__).with_name("peak.json")
SOURCE = Path(__file__).with_name("peak.c")
# The flags each instruction kind needs, as /proc/cpuinfo names them.
NEEDS = {
    "fp32": {"avx512f"},
    "bf16": {"avx512f", "avx512_bf16"},
    "int8": {"avx512f", "avx512_vnni"},
}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "int8": torch.int8}


def instruction_rates() -> dict[str, float]:
    """GMAC per CPU-second of one core for each kind this CPU has (empty without `cc`)."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    kinds = [kind for kind, flags in NEEDS.items() if flags <= cpu_flags()]
    if compiler is None or not kinds:
        return {}
    with tempfile.TemporaryDirectory() as folder:
        program = Path(folder) / "peak"
        subprocess.run([compiler, "-O3", "-funroll-all-loops", "-o", program, SOURCE], check=True)
        output = subprocess.run([program, *kinds], capture_output=True, text=True, check=True)
    return {
        kind: float(rate) for kind, rate in (line.split() for line in output.stdout.splitlines())
    }


def gemm_rate(dtype: torch.dtype, threads: int, size: int = SIZE) -> float:
    """Best of REPEATS: multiply-accumulates per CPU-second (size³ per product ÷ the process's
    CPU time), in GMAC/s — CPU time, so other programs sharing the cores do not lower it."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        if dtype == torch.int8:
            left = torch.randint(-128, 128, (size, size), dtype=torch.int8)
            right = torch.randint(-128, 128, (size, size), dtype=torch.int8)
            product = torch._int_mm
        else:
            left, right = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
            product = torch.mm
        product(left, right)  # warm-up: packing, kernel selection
        best = float("inf")
        for _ in range(REPEATS):
            start = time.process_time()
            product(left, right)
            best = min(best, time.process_time() - start)
    finally:
        torch.set_num_threads(previous)
    return size**3 / best / 1e9


def measure() -> dict:
    cores = torch.get_num_threads()
    instructions = instruction_rates()
    rates = {}
    for name, dtype in DTYPES.items():
        gemm = max(gemm_rate(dtype, 1), gemm_rate(dtype, cores))
        per_core = instructions.get(name, gemm)
        rates[name] = {
            "per_core": round(per_core, 1),
            "machine": round(per_core * cores, 1),
            "source": "instructions (peak.c)" if name in instructions else "library GEMM",
            "gemm_per_core": round(gemm, 1),
            "gemm_share": round(gemm / per_core, 3),
        }
    return {"unit": "GMAC per CPU-second", "gemm_size": SIZE, "cores": cores, "rates": rates}


def peak(precision: str, cores: int = 1) -> float:
    """The measured peak for `precision` on `cores` cores, in GMAC/s (per core × cores):
    from benchmarks/peak.json when it was measured on this CPU model, else measured now."""
    try:
        saved = json.loads(SAVED.read_text())
        if saved["machine"]["cpu"] == hardware()["cpu"]:
            return saved["rates"][precision]["per_core"] * cores
    except (OSError, KeyError, ValueError):
        pass
    rate = instruction_rates().get(precision) or gemm_rate(DTYPES[precision], 1)
    return round(rate, 1) * cores


def main() -> None:
    print(hardware_line(hardware()))
    document = measure()
    for name, rates in document["rates"].items():
        print(
            f"  {name:<5} {rates['per_core']:7.1f} GMAC per CPU-second ({rates['source']}), "
            f"{rates['machine']:7.1f} GMAC/s on every core; library GEMM "
            f"{rates['gemm_per_core']} ({rates['gemm_share']:.0%})"
        )
    print(f"saved {save_results(__file__, document)}")


if __name__ == "__main__":
    main()
