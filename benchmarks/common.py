"""What every benchmark prints first and saves beside its results: the machine it ran on,
the commit, the command line, the dates and the load average (`save_results`)."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch

from convnet.engine.device import cpu_has_native_bf16
from convnet.files import atomic_write_json

# ISA features that decide which kernels (and which peak rates) a CPU has: AVX-512 for fp32,
# AVX-512 BF16 or AMX for native bf16, VNNI/AMX-INT8 for int8. Named as in /proc/cpuinfo.
ISA_FEATURES = (
    "avx2",
    "fma",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
)
# Taken when this module is imported, i.e. when a benchmark starts.
STARTED = datetime.now(timezone.utc)
LOAD_AVERAGE_AT_START = os.getloadavg() if hasattr(os, "getloadavg") else None
ROOT = Path(__file__).resolve().parent.parent


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def hardware() -> dict:
    """CPU model, cores, ISA features, PyTorch build: the facts a reader needs to compare figures."""
    first: dict[str, str] = {}  # the first processor's fields
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            first.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    flags = cpu_flags()
    return {
        "cpu": first.get("model name") or platform.processor() or "unknown CPU",
        "vendor": first.get("vendor_id", "unknown"),
        "cores": os.cpu_count(),
        "isa": [feature for feature in ISA_FEATURES if feature in flags],
        "torch_threads": torch.get_num_threads(),
        "native_bf16": cpu_has_native_bf16(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def hardware_line(facts: dict) -> str:
    bf16 = "native bf16" if facts["native_bf16"] else "no native bf16"
    isa = " ".join(facts.get("isa", [])) or "no AVX"
    return (
        f"{facts['cpu']}, {facts['cores']} cores ({isa}), {bf16}, torch {facts['torch']}, "
        f"load average {load_average()}, {facts['date']}"
    )


def load_average() -> float | None:
    """The 1-minute load average now (None where the OS has none)."""
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def spread(values: list[float]) -> str:
    """Mean ± standard deviation (n) of a list of measurements."""
    if len(values) == 1:
        return f"{values[0]:.4g} (n=1)"
    return f"{statistics.mean(values):.4g} ± {statistics.stdev(values):.2g} (n={len(values)})"


def median_spread(values: list[float]) -> str:
    """Median (min, max) of a list of measurements."""
    if len(values) == 1:
        return f"{values[0]:.4g}"
    return f"{statistics.median(values):.4g} (min {min(values):.4g}, max {max(values):.4g})"


def verdict(met: bool) -> str:
    """How every benchmark states a target: judged in code, never by hand."""
    return "met" if met else "NOT met"


def judge(targets: dict[str, bool]) -> list[dict]:
    """Print each target with its verdict; the list goes into the saved results."""
    for target, met in targets.items():
        print(f"  {verdict(met):<8} {target}")
    return [
        {"target": target, "met": bool(met), "verdict": verdict(met)}
        for target, met in targets.items()
    ]


def _git(tree: Path | str, *arguments: str) -> str:
    return subprocess.run(
        ["git", "-C", str(tree), *arguments], capture_output=True, text=True, timeout=30
    ).stdout.strip()


def commit_of(tree: Path | str = ROOT) -> str:
    """The git commit a tree is at, with "+changes" when its tracked files differ from it."""
    facts = commit_facts(tree)
    return facts["commit"] + ("+changes" if facts["tree_dirty"] else "")


def commit_facts(tree: Path | str = ROOT) -> dict:
    """`git rev-parse HEAD`, whether the code differs from it, and which tracked files do.

    The tree counts as dirty when a tracked file other than a saved result (*.json) or the
    documentation (*.md) differs from the commit: a second benchmark run after the first has
    rewritten its JSON, or while the README is being edited, still runs the committed code.
    `changed_files` lists every tracked file that differs, so a reader can check.
    """
    try:
        commit = _git(tree, "rev-parse", "HEAD")
        changed = _git(tree, "diff", "HEAD", "--name-only").splitlines()
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown", "tree_dirty": None, "changed_files": None}
    code = [path for path in changed if not path.endswith((".json", ".md"))]
    return {
        "commit": commit or "unknown",
        "tree_dirty": bool(code) if commit else None,
        "changed_files": changed,
    }


def portable(argument: str) -> str:
    """An absolute path as a reader can use it: relative to the repository inside it, its
    last part elsewhere (the folders of the machine that ran it mean nothing to a reader)."""
    path = Path(argument)
    if not path.is_absolute() or not Path(*path.parts[:2]).exists():  # "/api/predict": a URL's
        return argument
    with contextlib.suppress(ValueError):
        return str(path.resolve().relative_to(ROOT))
    return path.name


def command_line() -> str:
    """How this benchmark was started, its paths as `portable` writes them."""
    return shlex.join(["python", *map(portable, sys.argv)])


ABSOLUTE_PATH = re.compile(r"""(?:^|(?<=[\s(=]))/[^\s"',;)]+""")


def portable_document(value):
    """`value` (a saved result: dicts, lists, strings, numbers) with every absolute path in
    its strings written as `portable` writes it."""
    if isinstance(value, dict):
        return {key: portable_document(item) for key, item in value.items()}
    if isinstance(value, list):
        return [portable_document(item) for item in value]
    if isinstance(value, str):
        return ABSOLUTE_PATH.sub(lambda match: portable(match.group()), value)
    return value


def provenance() -> dict:
    """Commit, dirty tree, command line, machine, dates and load averages of this run."""
    end_load = os.getloadavg() if hasattr(os, "getloadavg") else None
    rounded = lambda values: None if values is None else [round(v, 2) for v in values]  # noqa: E731
    return {
        **commit_facts(ROOT),
        "command": command_line(),
        "machine": hardware(),
        "started": STARTED.strftime("%Y-%m-%d %H:%M:%S UTC"),
        "finished": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        # 1-, 5- and 15-minute load averages: on a shared machine they explain the spread.
        "load_average": {"start": rounded(LOAD_AVERAGE_AT_START), "end": rounded(end_load)},
    }


def save_results(script: str, document: dict, name: str | None = None) -> Path:
    """Write SCRIPT.json (or NAME.json) beside the script, stamped with its provenance.

    The one place every saved result gets its commit, command line, machine, date and load;
    its paths are written as `portable` writes them. A result saved there by another command
    (the README and docs quote those files: a one-seed trial must not replace a five-seed
    measurement) is kept: this one goes to benchmarks/trials/ (not versioned) instead, with a
    line that says so. Re-running the recorded command replaces it.
    """
    path = Path(script).with_suffix(".json") if name is None else Path(script).with_name(name)
    document = portable_document({**provenance(), **document})
    recorded = _recorded_command(path)
    if recorded not in (None, document["command"]):
        moment = STARTED.strftime("%Y%m%d-%H%M%S")
        kept, path = path, path.parent / "trials" / f"{path.stem}-{moment}.json"
        print(
            f"{kept.name} holds the result of another command ({recorded}), which is kept; "
            f"this one is saved as {path.parent.name}/{path.name}. Re-run that command to "
            f"replace it, or move this file over it.",
            file=sys.stderr,
        )
    atomic_write_json(path, document)
    return path


def _recorded_command(path: Path) -> str | None:
    """The command that made a saved result (None: no result there, or one not readable)."""
    try:
        return json.loads(path.read_text()).get("command")
    except (OSError, ValueError, AttributeError):
        return None


def dumps(document: dict) -> str:
    return json.dumps(document, indent=2)
