"""The run directory: the one owner of its file names, its configuration, its history, its
model and its preprocessing. Commands, experiments, reports and the server ask a `Run`.

A run directory holds (docs/run-directory.md):

    config.json              the resolved TrainConfig; `convnet train --config` starts it again
    metrics.csv              one row per epoch (train loss and error, held-out loss and errors)
    steps.csv                one row per optimizer step (training loss, learning rate, images/s)
    model.safetensors        the weights after the last finished epoch
    checkpoint.safetensors   weights, optimizer buffers and position, for --resume
    results.json             the final evaluation (written when the run is finished)
    report.html, figures/    the run report
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

from torch import nn

from convnet.data.datasets import get_dataset_spec
from convnet.engine import run_lock
from convnet.engine.config import TrainConfig
from convnet.engine.loaded_model import LoadedModel
from convnet.engine.preparations import choose_preparation, trained_preparation
from convnet.engine.saved_config import parse_saved_config
from convnet.engine.weight_fit import load_weights
from convnet.errors import UserError
from convnet.files import (
    atomic_write_json,
    atomic_write_text,
    explain,
    make_folder,
    remove_partial_files,
)
from convnet.models import get_model
from convnet.wording import counted

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.csv"
STEPS_FILE = "steps.csv"
# steps.csv: the step's number (1 = the first update), its epoch (from 1), the mean training
# loss of its batch over all processes, the learning rate it used, and its images per second.
STEP_COLUMNS = ("step", "epoch", "loss", "lr", "images_per_second")
WEIGHTS_FILE = "model.safetensors"
CHECKPOINT_FILE = "checkpoint.safetensors"
RESULTS_FILE = "results.json"
REPORT_FILE = "report.html"
FIGURES = "figures"
# metrics.csv columns of older runs, read under today's names
OLD_HISTORY_KEYS = {
    "test_error": "eval_error",
    "test_top5_error": "eval_top5_error",
    "val_error": "eval_error",
    "val_top5_error": "eval_top5_error",
    "val_loss": "eval_loss",
}
# Fields of a configuration that do not change the trained weights or their score.
NOT_IN_CACHE_KEY = (
    "out",
    "data_dir",
    "device",
    "checkpoint_every",
    "workers",
    "backend",
    "tensorboard",
)


class Run:
    """One run directory."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.config_path = self.path / CONFIG_FILE
        self.weights_path = self.path / WEIGHTS_FILE
        self.checkpoint_path = self.path / CHECKPOINT_FILE
        self.metrics_path = self.path / METRICS_FILE
        self.steps_path = self.path / STEPS_FILE
        self.results_path = self.path / RESULTS_FILE
        self.report_path = self.path / REPORT_FILE
        self.figures = self.path / FIGURES

    # --- creating and reading -----------------------------------------------------------

    @classmethod
    def create(cls, config: TrainConfig, say: Callable[[str], None] = print) -> Run:
        """The run directory of a new or resumed run (config.out, or runs/MODEL-SOURCE-TIME),
        made and locked for this process's writes (`prepare`)."""
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        path = (
            Path(config.out)
            if config.out
            else Path("runs") / f"{config.model}-{config.source_name}-{stamp}"
        )
        run = cls(path)
        run.prepare(say)
        return run

    def prepare(self, say: Callable[[str], None] = print) -> None:
        """Make the directory, take its writer's lock (engine/run_lock.py: a second writer is
        refused; release it with `run_lock.release(path)`), and delete the temporary files a
        killed write left behind."""
        if self.path.exists() and not self.path.is_dir():
            raise UserError(f"{self.path} is a file, not a run directory; give another --out.")
        try:
            made = not self.path.exists()
            make_folder(self.path)
            run_lock.acquire(self.path, say, made)
            remove_partial_files(self.path)
        except OSError as error:
            run_lock.release(self.path)
            raise explain(error, self.path) or UserError(
                f"Cannot make the run directory {self.path}: {error.strerror or error}."
            ) from None

    def write_config(self, config: TrainConfig) -> None:
        atomic_write_json(self.config_path, asdict(config))

    def read_config(self, purpose: str = "") -> TrainConfig:
        """The saved configuration; a UserError says what is wrong with a missing or damaged one."""
        prefix = f"Cannot {purpose}: " if purpose else ""
        if self.path.exists() and not self.path.is_dir():
            raise UserError(f"{prefix}{self.path} is a file, not a run directory.")
        if not self.path.is_dir():
            raise UserError(f"{prefix}run directory {self.path} does not exist.")
        if not self.config_path.is_file():
            raise UserError(f"{prefix}{self.path} is not a run directory: it has no {CONFIG_FILE}.")
        try:
            text = self.config_path.read_text()
        except (UnicodeDecodeError, OSError) as error:
            raise UserError(
                f"{prefix}{self.config_path} is not a valid run configuration ({error})."
            ) from None
        try:
            return parse_saved_config(text, self.config_path)
        except UserError as error:
            raise UserError(f"{prefix}{error}") from None

    def write_history(self, history: list[dict]) -> None:
        """metrics.csv from one dictionary per epoch (its keys are the columns)."""
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(history[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(history)
        atomic_write_text(self.metrics_path, buffer.getvalue())

    def history(self) -> list[dict]:
        """metrics.csv as numbers, one dictionary per epoch ([] before the first epoch)."""
        if not self.metrics_path.is_file():
            return []
        with self.metrics_path.open() as handle:
            return [
                {
                    OLD_HISTORY_KEYS.get(key, key): float(value)
                    for key, value in row.items()
                    if value not in (None, "")
                }
                for row in csv.DictReader(handle)
            ]

    def append_steps(self, rows: list[tuple]) -> None:
        """Add rows (in STEP_COLUMNS order) to steps.csv. Appended, not rewritten, so a long
        run's log costs little per checkpoint; a line cut short by a crash is skipped by
        `steps` and dropped by `keep_steps` when the run resumes."""
        if rows:
            header = "" if self.steps_path.is_file() else _step_lines([STEP_COLUMNS])
            with self.steps_path.open("a") as handle:
                handle.write(header + _step_lines(rows))

    def steps(self) -> list[dict]:
        """steps.csv as numbers, one dictionary per step ([] where there is none)."""
        if not self.steps_path.is_file():
            return []
        rows = []
        for line in self.steps_path.read_text().splitlines()[1:]:
            try:
                numbers = [float(value) for value in line.split(",")]
            except ValueError:
                continue
            if len(numbers) == len(STEP_COLUMNS):
                rows.append(dict(zip(STEP_COLUMNS, numbers, strict=True)))
        return rows

    def keep_steps(self, done: int) -> None:
        """Keep the rows of the first `done` steps only: a resumed run redoes the rest."""
        if self.steps_path.is_file():
            kept = [tuple(row.values()) for row in self.steps() if row["step"] <= done]
            atomic_write_text(self.steps_path, _step_lines([STEP_COLUMNS, *kept]))

    def results(self) -> dict | None:
        """results.json, or None where the run has not finished (or it is unreadable)."""
        try:
            results = json.loads(self.results_path.read_text())
        except (OSError, ValueError):
            return None
        return results if isinstance(results, dict) else None

    @property
    def finished(self) -> bool:
        """Every epoch trained and evaluated: configuration, weights and results are there."""
        return (
            self.config_path.is_file()
            and self.weights_path.is_file()
            and self.results() is not None
        )

    def unfinished_note(self) -> str | None:
        """For a run whose weights are there but whose training stopped early (--stop-after-epoch,
        Ctrl-C, a crash): one line saying after which epoch, and how to finish it. None for a
        finished run, or one whose configuration cannot be read."""
        if self.finished or not self.weights_path.is_file():
            return None
        try:
            epochs = self.read_config().epochs
        except UserError:
            return None
        done = len(self.history())
        return (
            f"Note: {self.path} has not finished: these are its weights after epoch {done} of "
            f"{epochs}. Finish it with 'convnet train --resume {self.path}'."
        )

    def test_error(self) -> float | None:
        results = self.results()
        try:
            return float(results["top1_error"]) if results else None
        except (KeyError, TypeError, ValueError):
            return None

    # --- the model ----------------------------------------------------------------------

    def load(self, module: nn.Module | None = None) -> LoadedModel:
        """The run's trained model (on the CPU, in evaluation mode) with its class names and
        its own preprocessing. A run of a module of the user's own (trained through the Python
        API) loads its weights into `module`, built as it was for the run; without one it is
        a UserError, since the run holds the weights but not the module's code."""
        config = self.read_config()
        if not self.weights_path.is_file():
            if trained := len(self.history()):  # the weights were written, then removed
                raise UserError(
                    f"{self.path} has no weights ({WEIGHTS_FILE}), though it trained "
                    f"{counted(trained, 'epoch')}: the file was removed. Train the run again, "
                    "or restore the file."
                )
            raise UserError(
                f"{self.path} has no weights ({WEIGHTS_FILE}): the run did not finish an epoch. "
                f"Continue it with 'convnet train --resume {self.path}'."
            )
        if config.custom_module is not None and module is None:
            raise UserError(
                f"{self.path} holds a module of your own ({config.custom_module.get('class')}, "
                "trained through the Python API); its weights are there but not its code. Build "
                f"the module again and pass it: convnet.load_run('{self.path}', module=...)."
            )
        if config.custom_module is None and module is not None:
            raise UserError(
                f"{self.path} is a run of the registered model {config.model}; "
                "load it without module=."
            )
        spec = config.spec
        if config.data is not None:
            class_names = tuple(config.classes)
            if config.image_size is None or not class_names:
                raise UserError(f"{self.config_path} lacks the classes or image size of its run.")
        elif config.custom_data is not None:  # a Dataset of the user's own: its images as given
            class_names = tuple(config.classes)
        else:
            class_names = get_dataset_spec(config.dataset or "mnist").class_names
        input_size, normalization = config.model_inputs()
        preparation, why = choose_preparation(
            None,
            channels=input_size[0],
            trained_on=trained_preparation(config.data, config.dataset, config.custom_data),
        )
        model = (
            module
            if module is not None
            else get_model(
                config.model,
                num_classes=len(class_names),
                in_channels=input_size[0],
                **config.model_config,
            )
        )
        load_weights(model.cpu(), self.weights_path)
        model.eval()
        return LoadedModel(
            config.model,
            spec,
            model,
            class_names,
            config,
            photos=preparation == "photo",
            input_size=input_size,
            normalization=normalization,
            preparation_reason=why,
            weights_path=self.weights_path,
            unfinished=self.unfinished_note(),
        )


def _step_lines(rows: list[tuple]) -> str:
    """CSV lines; whole numbers without a decimal point, others to 6 significant digits."""

    def cell(value: object) -> str:
        if isinstance(value, float):
            return str(int(value)) if value.is_integer() and abs(value) < 2**53 else f"{value:.6g}"
        return str(value)

    return "".join(",".join(cell(value) for value in row) + "\n" for row in rows)


def load_run(path: str | Path, module: nn.Module | None = None) -> LoadedModel:
    return Run(path).load(module)


# --- finding runs -------------------------------------------------------------------------


def find_runs(root: str | Path, model: str | None = None, dataset: str | None = None) -> list[Run]:
    """The finished runs directly under `root` of `model` on `dataset` (where given); runs
    of a module of the user's own are left out (their directory cannot rebuild the model)."""
    root = Path(root)
    found = []
    for path in sorted(root.iterdir()) if root.is_dir() else []:
        run = Run(path)
        if not run.finished:
            continue
        try:
            config = run.read_config()
        except UserError:
            continue
        if (
            config.custom_module is None
            and (model is None or config.model == model)
            and (dataset is None or config.source_name == dataset)
        ):
            found.append(run)
    return found


def newest_run(
    root: str | Path, model: str | None = None, dataset: str | None = None
) -> Run | None:
    """The finished run whose weights were written last."""
    runs = find_runs(root, model, dataset)
    return max(runs, key=lambda run: run.weights_path.stat().st_mtime) if runs else None


def best_run(root: str | Path, model: str | None = None, dataset: str | None = None) -> Run | None:
    """The finished run with the lowest held-out top-1 error."""
    runs = [run for run in find_runs(root, model, dataset) if run.test_error() is not None]
    return min(runs, key=lambda run: (run.test_error(), run.path.name)) if runs else None


def cache_key(config: TrainConfig | dict, ignored: tuple[str, ...] = ()) -> str:
    """A short hash of everything in a configuration that shapes the weights or the score:
    experiments keep their runs under it and reuse a finished one."""
    values = asdict(config) if isinstance(config, TrainConfig) else dict(config)
    kept = {k: v for k, v in sorted(values.items()) if k not in NOT_IN_CACHE_KEY + ignored}
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:10]
