"""Claim 6, cost: profiler operators by layer type, verdicts, totals against `convnet summary`."""

import json
import subprocess
import sys
import time

import pytest
import torch
from torch import nn

from convnet.engine.threads import available_cpus
from convnet.experiments.cost import (
    NOT_JUDGED,
    ModelCost,
    TimingConditions,
    _time_shares,
    judge_claims,
    layer_type,
    run_cost,
)
from tests.helpers.cli import cli


def test_layer_types_of_profiler_operators():
    assert layer_type("aten::conv2d") == "convolution"
    assert layer_type("autograd::engine::evaluate_function: ConvolutionBackward0") == "convolution"
    assert layer_type("aten::max_pool2d") == "pooling"
    assert layer_type("autograd::engine::evaluate_function: AddmmBackward0") == "fully connected"
    assert layer_type("aten::relu_") == "activation"
    assert layer_type("aten::flatten") == "other"


def fake_cost(
    model, family, params, seconds, conv_share, weight_bytes, activation_bytes, spread=0.02
):
    timing = {kind: {"1": seconds, "256": seconds / 10} for kind in ("inference", "training")}
    shares = {kind: {b: {"convolution": conv_share} for b in ("1", "256")} for kind in timing}
    spreads = {kind: {b: spread for b in ("1", "256")} for kind in timing}
    return ModelCost(
        model,
        family,
        params,
        params,
        weight_bytes,
        activation_bytes,
        params * 7,
        params * 7,
        seconds_per_image=timing,
        time_spread=spreads,
        time_shares=shares,
        share_spread={kind: {b: spread / 2 for b in ("1", "256")} for kind in timing},
    )


def conditions(load: float, cpu_share: float | None = 1.0, cores: int = 2) -> TimingConditions:
    return TimingConditions("thread CPU time", cores, load, load, cpu_share)


def test_cost_verdicts_follow_the_measurements():
    cnn = fake_cost("cnn", "LeNet", 1000, 3e-3, 0.66, 4000, 30_000)
    twin = fake_cost("twin", "MLP", 1010, 1e-3, 0.0, 4040, 300)
    claims = {c["claim"]: c for c in judge_claims([cnn, twin])}
    assert claims["convolution ≈ 2/3 of run time"]["verdict"] == "supported"
    slower = next(c for name, c in claims.items() if "slower" in name)
    assert slower["verdict"] == "supported" and slower["values"]["inference batch 1"] == 3.0
    memory = next(c for name, c in claims.items() if "memory" in name)
    assert memory["verdict"] == "depends"  # more activations, not more weights

    quiet = {c["id"]: c["verdict"] for c in judge_claims([cnn, twin], conditions(0.4))}
    assert quiet == {"convolution_share": "supported", "slowdown": "supported", "memory": "depends"}

    fast = fake_cost("cnn", "LeNet", 1000, 1e-3, 0.2, 8000, 30_000)
    claims = {c["claim"]: c for c in judge_claims([fast, twin])}
    assert claims["convolution ≈ 2/3 of run time"]["verdict"] == "not supported"
    assert all(c["verdict"] != "supported" for name, c in claims.items() if "slower" in name)
    assert next(c for n, c in claims.items() if "memory" in n)["verdict"] == "supported"


@pytest.mark.parametrize(
    "machine, spread, reason",
    [
        (conditions(2.4), 0.02, "the machine was busy (load 2.4 on 2 cores"),
        (conditions(0.5, cpu_share=0.55), 0.02, "the timing thread ran 55% of the time"),
        (conditions(0.5), 0.3, "the rounds disagree (spread "),
    ],
)
def test_times_are_judged_only_on_a_quiet_machine_with_rounds_that_agree(machine, spread, reason):
    cnn = fake_cost("cnn", "LeNet", 1000, 3e-3, 0.66, 4000, 30_000, spread)
    twin = fake_cost("twin", "MLP", 1010, 1e-3, 0.0, 4040, 300, spread)
    claims = {c["id"]: c for c in judge_claims([cnn, twin], machine)}
    for timed in ("convolution_share", "slowdown"):
        assert claims[timed]["verdict"] == NOT_JUDGED, claims[timed]
        assert claims[timed]["why"].startswith("not judged: ") and reason in claims[timed]["why"]
    assert claims["memory"]["verdict"] == "depends"  # counted, not timed: always judged


@pytest.mark.slow
def test_the_cost_experiment_beside_busy_programs_gives_no_timing_verdict():
    """More programs spinning than cores: the timing thread waits for a core a good part
    of the time, which the experiment sees at once (the load average takes a minute)."""
    spinners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(available_cpus() + 1)
    ]
    try:
        time.sleep(0.5)
        result = run_cost(
            ("lenet5", "mlp_60k"), repeats_batch1=4, repeats_batch256=2, profile_repeats=1, rounds=2
        )
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
    assert result.conditions.clock == "thread CPU time" and result.conditions.busy
    assert result.conditions.cpu_share < 0.9, result.conditions
    verdicts = {claim["id"]: claim["verdict"] for claim in result.claims}
    assert verdicts["convolution_share"] == verdicts["slowdown"] == NOT_JUDGED
    assert verdicts["memory"] != NOT_JUDGED
    assert all(
        "not judged: the machine was busy (load " in claim["why"]
        for claim in result.claims
        if claim["id"] != "memory"
    )


def test_profiling_writes_nothing_to_the_terminal(capfd):
    """torch.profiler's C++ side writes "profiler_start"/"profiler_stop" lines straight to file
    descriptor 2 at every profile; the cost experiment profiles dozens of times."""
    layer = nn.Linear(8, 8)
    shares = _time_shares(lambda: layer(torch.ones(4, 8)).sum(), repeats=2)
    assert shares and abs(sum(shares.values()) - 1) < 1e-3
    assert capfd.readouterr().err == ""


@pytest.mark.slow
def test_cost_totals_agree_with_convnet_summary(tmp_path, capsys):
    cost = json.loads(
        cli(
            capsys,
            "experiment",
            "cost",
            "--models",
            "lenet5,mlp_60k",
            "--repeats",
            "2",
            "--repeats-large",
            "1",
            "--figure",
            str(tmp_path / "cost.png"),
            "--json",
        )
    )
    assert (tmp_path / "cost.png").is_file()
    for measured in cost["models"]:
        total = json.loads(cli(capsys, "summary", measured["model"], "--json"))["total"]
        for key in (
            "params",
            "trainable_params",
            "macs",
            "connections",
            "weight_bytes",
            "activation_bytes",
        ):
            assert measured[key] == total[key], (measured["model"], key)
        for kind in ("inference", "training"):
            assert set(measured["seconds_per_image"][kind]) == {"1", "256"}
            for shares in measured["time_shares"][kind].values():
                assert sum(shares.values()) == pytest.approx(1.0, abs=0.01)
    assert len(cost["claims"]) == 3
