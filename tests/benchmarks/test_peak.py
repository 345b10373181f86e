"""The machine's measured peak (benchmarks/peak.py): instruction rates in the order the
hardware gives them, and the saved figure reused only for the CPU it was measured on."""

from __future__ import annotations

import itertools
import json
import shutil

import peak  # benchmarks/peak.py: tests/benchmarks/conftest.py puts it on the path
import pytest


@pytest.mark.skipif(not shutil.which("cc") and not shutil.which("gcc"), reason="no C compiler")
def test_each_wider_multiply_does_more_per_cpu_second():
    """vpdpbusd does 64 int8 MACs where vdpbf16ps does 32 bf16 and an FMA 16 fp32: on every
    AVX-512 core with them, the measured rates keep that order (a miscounted kernel breaks it)."""
    rates = peak.instruction_rates()
    if not rates:
        pytest.skip("this CPU has no AVX-512")
    kinds = [kind for kind in ("fp32", "bf16", "int8") if kind in rates]
    for narrow, wide in itertools.pairwise(kinds):
        assert rates[wide] > 1.3 * rates[narrow], rates
    assert all(1 < rate < 10_000 for rate in rates.values()), rates


def test_the_saved_peak_is_used_only_on_the_cpu_it_was_measured_on(tmp_path, monkeypatch):
    saved = tmp_path / "peak.json"
    facts = peak.hardware()
    document = {"machine": {"cpu": facts["cpu"]}, "rates": {"int8": {"per_core": 123.0}}}
    saved.write_text(json.dumps(document))
    monkeypatch.setattr(peak, "SAVED", saved)
    assert peak.peak("int8", cores=2) == 246.0
    document["machine"]["cpu"] = "another CPU"
    saved.write_text(json.dumps(document))
    monkeypatch.setattr(peak, "instruction_rates", lambda: {"int8": 7.0})
    assert peak.peak("int8", cores=2) == 14.0
