"""Every flag of `convnet train` either sets a field of the run's configuration, under the
field's own name, or steers the command: none is silently dropped on its way to TrainConfig."""

from __future__ import annotations

import argparse
from dataclasses import fields

from convnet.commands.train_options import COMMAND_FLAGS, CONFIG_FLAGS, configure_train
from convnet.engine.config import TrainConfig


def train_flags() -> set[str]:
    parser = argparse.ArgumentParser()
    configure_train(parser)
    return {action.dest for action in parser._actions if action.dest != "help"}


def test_every_train_flag_is_mapped_once():
    assert not set(CONFIG_FLAGS) & set(COMMAND_FLAGS)
    assert train_flags() == set(CONFIG_FLAGS) | set(COMMAND_FLAGS)


def test_every_configuration_flag_names_a_field():
    names = {item.name for item in fields(TrainConfig)}
    assert set(CONFIG_FLAGS) <= names, sorted(set(CONFIG_FLAGS) - names)
