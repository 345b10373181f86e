"""The benchmark scripts import each other as top-level modules (`import common`): their
folder goes on the import path, as when they run."""

import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
