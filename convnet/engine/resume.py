"""`--resume RUN`: a run's saved configuration with what a resumed run may change."""

from __future__ import annotations

from pathlib import Path

from convnet.engine import distributed
from convnet.engine.config import TrainConfig
from convnet.engine.run import Run
from convnet.errors import UserError

# What `--resume RUN` may change: where the data lies and how it is read, how long to train,
# where and how the steps compute.
RESUMABLE_CHANGES = ("epochs", "data", "data_dir", "workers", "device", "tensorboard", "compile")


def resumed_config(
    run: Run, changes: dict, session: distributed.Session
) -> tuple[TrainConfig, int]:
    """The saved configuration of `run` with the allowed `changes`, and the epochs it had."""
    saved = run.read_config("resume")
    if not run.checkpoint_path.is_file():
        raise UserError(f"Cannot resume: {run.checkpoint_path} does not exist.")
    refused = sorted(set(changes) - set(RESUMABLE_CHANGES))
    if refused:
        raise UserError(
            f"--resume continues a run as it was configured; {', '.join('--' + n.replace('_', '-') for n in refused)} "
            "cannot change. Start a new run for other settings (--config RUN/config.json "
            "starts from its configuration)."
        )
    saved = saved.resolved(saved.world_size)  # a configuration from an older version
    planned = saved.epochs
    for key, value in changes.items():
        if key == "data":
            value = str(Path(value).expanduser().resolve())
        if key == "data" and saved.data is None:
            raise UserError(
                f"{run.path} trained on {saved.dataset}, not an image folder; drop --data."
            )
        setattr(saved, key, value)
    saved.out = str(run.path)
    global_batch = saved.batch_size * saved.world_size
    if global_batch % session.world_size:
        raise UserError(
            f"This run's global batch is {global_batch}; it cannot be shared by "
            f"{session.world_size} processes. Resume it with a process count that divides it."
        )
    saved.batch_size, saved.world_size = global_batch // session.world_size, session.world_size
    return saved, planned
