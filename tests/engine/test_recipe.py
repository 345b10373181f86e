"""The training recipe (convnet/engine/recipe.py): the schedules as pure functions of the
step, checked against PyTorch's own schedulers; the optimizers and their parameter groups;
freezing; the batch of a short run."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from convnet.engine.config import TrainConfig
from convnet.engine.recipe import (
    Schedule,
    create_optimizer,
    freeze,
    parameter_groups,
    set_learning_rate,
    short_run_batch_size,
)
from convnet.errors import UserError
from convnet.models import get_model


def schedule(**values) -> Schedule:
    config = TrainConfig(**{"epochs": 10, "lr": 0.1, "warmup_fraction": 0.1, **values})
    return Schedule.of(config.resolved(), steps_per_epoch=10)


def test_cosine_warms_up_then_decays_to_its_minimum():
    rates = [schedule(lr_min=0.01)(step) for step in range(101)]
    assert rates[0] == pytest.approx(0.005)  # the warm-up starts at peak / 20
    assert max(rates) == pytest.approx(0.1) and rates[10] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(rates[10:], rates[11:], strict=False))
    assert rates[100] == pytest.approx(0.01)


def test_the_default_schedule_is_the_one_runs_always_had():
    """Linear warm-up from peak/20, cosine to 0 (the formula of earlier runs, bit for bit)."""
    warmup, total, peak = 15, 100, 0.05
    plain = schedule(epochs=10, lr=peak, warmup_fraction=0.15)
    for step in range(total + 1):
        expected = (
            peak * (0.05 + 0.95 * step / warmup)
            if step < warmup
            else peak * 0.5 * (1 + math.cos(math.pi * min((step - warmup) / (total - warmup), 1)))
        )
        assert plain(step) == expected, step


def test_onecycle_is_pytorchs_one_cycle():
    model = nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    total, warmup = 100, 30
    reference = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=0.1, total_steps=total, pct_start=warmup / total,
        anneal_strategy="cos", cycle_momentum=False, three_phase=False,
    )  # fmt: skip
    ours = schedule(lr_scheduler="onecycle", warmup_fraction=0.3)
    for step in range(total):
        assert ours(step) == pytest.approx(optimizer.param_groups[0]["lr"], rel=1e-9), step
        optimizer.step()
        reference.step()


@pytest.mark.parametrize(
    "values, epoch_rates",
    [
        ({"lr_scheduler": "step", "lr_step_size": 3}, {1: 0.1, 3: 0.01, 6: 0.001, 9: 1e-4}),
        ({"lr_scheduler": "multistep", "lr_milestones": [2, 7]}, {1: 0.1, 2: 0.01, 7: 0.001}),
        ({"lr_scheduler": "constant"}, {1: 0.1, 5: 0.1, 9: 0.1}),
    ],
)
def test_step_multistep_and_constant_by_epoch(values, epoch_rates):
    rule = schedule(**values)
    for epoch, rate in epoch_rates.items():
        assert rule(epoch * 10 + 5) == pytest.approx(rate), epoch


def test_the_warm_up_in_epochs_or_as_a_share_but_not_both():
    assert schedule(warmup_fraction=None, lr_warmup_epochs=2.0).warmup_steps == 20
    assert schedule(warmup_fraction=None, lr_warmup_epochs=0.0)(0) == pytest.approx(0.1)
    with pytest.raises(UserError, match="not both"):
        TrainConfig(warmup_fraction=0.1, lr_warmup_epochs=1.0).validate()


def test_parameter_groups_decay_weights_and_scale_the_head():
    model = get_model("lenet5")
    groups = parameter_groups(model, 5e-4, 1e-5)
    assert [group["weight_decay"] for group in groups] == [5e-4, 1e-5]
    assert all(p.dim() > 1 for p in groups[0]["params"])
    assert all(p.dim() <= 1 for p in groups[1]["params"])
    head = ("head.output.weight", "head.output.bias")
    scaled = parameter_groups(model, 5e-4, 0.0, head, 10.0)
    assert [group.get("lr_scale", 1.0) for group in scaled] == [1.0, 1.0, 10.0, 10.0]
    assert sum(len(g["params"]) for g in scaled) == len(list(model.parameters()))
    optimizer = torch.optim.SGD(scaled, lr=1.0)
    set_learning_rate(optimizer, 0.02)
    assert [group["lr"] for group in optimizer.param_groups] == [0.02, 0.02, 0.2, 0.2]


@pytest.mark.parametrize(
    "opt, kind, nesterov",
    [("sgd-nesterov", torch.optim.SGD, True), ("sgd", torch.optim.SGD, False),
     ("adamw", torch.optim.AdamW, None), ("rmsprop", torch.optim.RMSprop, None)],
)  # fmt: skip
def test_each_optimizer(opt, kind, nesterov):
    model = get_model("lenet5")
    momentum = None if opt == "adamw" else 0.9
    optimizer = create_optimizer(model, opt, 0.01, momentum, 5e-4)
    assert type(optimizer) is kind
    if nesterov is not None:
        assert optimizer.defaults["nesterov"] is nesterov


def test_adamw_has_no_momentum_to_give():
    with pytest.raises(UserError, match="AdamW keeps its own"):
        TrainConfig(opt="adamw", momentum=0.9).validate()
    assert TrainConfig(opt="adamw").resolved().momentum is None
    assert TrainConfig().resolved().momentum == 0.9


def test_freeze_stops_training_what_matches_and_refuses_a_pattern_that_matches_nothing():
    model = get_model("lenet5")
    frozen = freeze(model, ["features.*"])
    assert frozen and all(name.startswith("features.") for name in frozen)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and not trainable & set(frozen)
    grouped = {id(p) for group in parameter_groups(model, 0.0) for p in group["params"]}
    assert not any(id(p) in grouped for name, p in model.named_parameters() if name in frozen)
    assert len(grouped) == len(trainable)
    with pytest.raises(UserError, match="matches no parameter"):
        freeze(get_model("lenet5"), ["backbone.*"])
    with pytest.raises(UserError, match="matches every parameter"):
        freeze(get_model("lenet5"), ["features.*", "head.*"])


def test_a_short_run_counts_optimizer_steps_with_accumulation():
    assert short_run_batch_size(128, 2000, 1) == 16
    assert short_run_batch_size(128, 6000, 1, accumulate=1) == 32
    assert short_run_batch_size(128, 6000, 1, accumulate=4) == 16
