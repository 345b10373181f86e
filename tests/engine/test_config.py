"""A run's configuration: the learning-rate schedule, bad values, the batch of a short run."""

import pytest

from convnet.engine.recipe import Schedule, short_run_batch_size
from convnet.engine.train import TrainConfig
from convnet.errors import UserError


def test_learning_rate_schedule_warms_up_then_decays():
    schedule = Schedule("cosine", 0.1, total_steps=100, steps_per_epoch=10, warmup_steps=10)
    rates = [schedule(step) for step in range(101)]
    assert rates[0] == pytest.approx(0.005)
    assert max(rates) == pytest.approx(0.1)
    assert rates.index(max(rates)) == 10
    assert rates[-1] == pytest.approx(0.0, abs=1e-12)


def test_bad_configuration_is_a_user_error():
    for bad in (dict(epochs=0), dict(batch_size=0), dict(lr=-1.0)):
        with pytest.raises(UserError):
            TrainConfig(**bad).resolved()


@pytest.mark.parametrize(
    ("images", "epochs", "world_size", "expected"),
    [
        (60_000, 1, 1, 128),
        (2_000, 1, 1, 16),
        (2_000, 4, 1, 64),
        (6_000, 1, 1, 32),
        (300, 1, 1, 16),
        (2_000, 2, 2, 16),
        (12_800, 1, 1, 128),
    ],
)
def test_a_short_run_gets_a_batch_that_gives_it_enough_steps(images, epochs, world_size, expected):
    assert short_run_batch_size(128, images, epochs, world_size) == expected
