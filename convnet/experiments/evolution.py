"""Claim 8 in miniature: the families that won ImageNet by growing deeper — LeNet, AlexNet,
VGG, NiN, GoogLeNet, ResNet — as compact networks trained with one shared recipe on
Fashion-MNIST on a CPU, with their test error, size, cost, depth and training time, beside
the accuracies published for the same data set (issue 6).

Every model gets the same training: SGD with Nesterov momentum, linear warm-up then cosine
decay, the engine's batch augmentation (random shift, rotation, scale), the same epochs,
batch size, learning rate and weight decay. Runs are cached under a runs directory keyed by
their configuration, so calling the experiment again with the same settings is instant.

A model below its data set's accuracy floor (ACCURACY_FLOORS) has not learned what its
architecture can, so it says nothing about depth: the result names it, and the figure
draws it apart and runs no depth line through it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from convnet.analysis.summary import summarize
from convnet.analysis.zoo import hardware
from convnet.data.datasets import load_dataset
from convnet.engine.config import TrainConfig
from convnet.engine.run import Run, cache_key
from convnet.engine.train import fit
from convnet.errors import UserError
from convnet.experiments import CachedRunSettings, cpu_threads
from convnet.models import get_model, get_model_spec
from convnet.models.compact import MINI_TRAIN_DEFAULTS
from convnet.wording import counted

DEFAULT_MODELS = (
    "lenet5",
    "alexnet_mini",
    "vgg_mini",
    "nin_mini",
    "googlenet_mini",
    "resnet_mini",
)
# The shared recipe, also the compact models' `convnet train` defaults (MINI_TRAIN_DEFAULTS).
DEFAULT_EPOCHS = MINI_TRAIN_DEFAULTS["epochs"]
DEFAULT_BATCH_SIZE = MINI_TRAIN_DEFAULTS["batch_size"]
DEFAULT_LR = MINI_TRAIN_DEFAULTS["lr"]
DEFAULT_WEIGHT_DECAY = MINI_TRAIN_DEFAULTS["weight_decay"]
BUDGET_SECONDS = 600.0  # the budget: at most ten minutes of training per model

D2L = (
    "Zhang, Lipton, Li, Smola. Dive into Deep Learning (d2l.ai), chapters 7–8: test accuracy "
    "on Fashion-MNIST after 10 epochs (inputs resized to 28–224 px by chapter)"
)
# Family -> (network the book trained, its test accuracy after 10 epochs).
PUBLISHED_D2L: dict[str, tuple[str, float]] = {
    "LeNet": ("LeNet", 0.789),
    "AlexNet": ("AlexNet", 0.882),
    "VGG": ("VGG-11", 0.922),
    "NiN": ("NiN", 0.785),
    "GoogLeNet": ("GoogLeNet", 0.883),
    "ResNet": ("ResNet-18", 0.918),
}
BENCHMARK = (
    "Fashion-MNIST benchmark table (zalandoresearch/fashion-mnist README): ResNet18 with "
    "normalization, flips, translation and rotation"
)
PUBLISHED_BENCHMARK: dict[str, tuple[str, float]] = {"ResNet": ("ResNet-18", 0.949)}
# The test accuracy below which a trained model says nothing about its architecture: on
# Fashion-MNIST that of a linear classifier (the benchmark table's logistic regression,
# 84.2%), rounded up; on MNIST the lecture report's floor (lecture_words.ACCURACY_FLOOR).
ACCURACY_FLOORS: dict[str, float] = {"fashion-mnist": 0.85, "mnist": 0.97}


@dataclass
class EvolutionSettings(CachedRunSettings):
    dataset: str = "fashion-mnist"
    models: tuple[str, ...] = DEFAULT_MODELS
    epochs: int = DEFAULT_EPOCHS
    batch_size: int = DEFAULT_BATCH_SIZE
    lr: float = DEFAULT_LR
    weight_decay: float = DEFAULT_WEIGHT_DECAY
    augment: bool = True
    runs_dir: str = "runs/evolution"


@dataclass
class ModelOutcome:
    """One family's compact network after the shared recipe."""

    model: str
    family: str
    year: int | None
    depth: int  # weight layers on the longest path (convnet.analysis.summary)
    params: int
    macs: int  # multiply-accumulates per image, forward
    test_error: float
    train_seconds: float
    images_per_second: float
    epochs: int
    run_dir: str
    reused: bool
    test_error_by_epoch: list[float] = field(default_factory=list)

    @property
    def test_accuracy(self) -> float:
        return 1 - self.test_error

    @property
    def within_budget(self) -> bool:
        return self.train_seconds <= BUDGET_SECONDS

    def published(self) -> dict:
        """The published accuracies of this family on Fashion-MNIST, and the margin to each."""
        found = {}
        for key, table in (("d2l_10_epochs", PUBLISHED_D2L), ("benchmark", PUBLISHED_BENCHMARK)):
            if self.family in table:
                network, accuracy = table[self.family]
                found[key] = {
                    "network": network,
                    "accuracy": accuracy,
                    "margin": round(self.test_accuracy - accuracy, 6),
                    "beaten": self.test_accuracy > accuracy,
                }
        return found

    def to_dict(self) -> dict:
        return {
            **asdict(self),
            "test_accuracy": round(self.test_accuracy, 6),
            "within_budget": self.within_budget,
            "published": self.published(),
        }


@dataclass
class EvolutionResult:
    settings: dict
    outcomes: list[ModelOutcome]
    num_train_images: int
    num_test_images: int
    hardware: dict
    seconds: float

    def by_depth(self) -> list[ModelOutcome]:
        return sorted(self.outcomes, key=lambda outcome: (outcome.depth, outcome.year or 0))

    @property
    def accuracy_floor(self) -> float | None:
        """The data set's floor (ACCURACY_FLOORS); None for a data set without one."""
        return ACCURACY_FLOORS.get(self.settings.get("dataset", ""))

    def passes(self, outcome: ModelOutcome) -> bool:
        floor = self.accuracy_floor
        return floor is None or outcome.test_accuracy >= floor

    def short_of_floor(self) -> list[ModelOutcome]:
        """The models under the floor, shallowest first: no depth line runs through them."""
        return [outcome for outcome in self.by_depth() if not self.passes(outcome)]

    def to_dict(self) -> dict:
        return {
            "settings": self.settings,
            "num_train_images": self.num_train_images,
            "num_test_images": self.num_test_images,
            "hardware": self.hardware,
            "seconds": round(self.seconds, 2),
            "budget_seconds": BUDGET_SECONDS,
            "accuracy_floor": self.accuracy_floor,
            "short_of_floor": [outcome.model for outcome in self.short_of_floor()],
            "models": [
                {**outcome.to_dict(), "passes_floor": self.passes(outcome)}
                for outcome in self.outcomes
            ],
            "sources": {"d2l_10_epochs": D2L, "benchmark": BENCHMARK},
        }


def training_config(settings: EvolutionSettings, model: str) -> TrainConfig:
    """The shared recipe for one model: every hyperparameter set here, none the model's."""
    get_model_spec(model)  # fails clearly on an unknown name
    return TrainConfig(
        model=model,
        dataset=settings.dataset,
        data_dir=settings.data_dir,
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        lr=settings.lr,
        weight_decay=settings.weight_decay,
        augment=settings.augment,
        seed=settings.seed,
        device=settings.device,
        precision=settings.precision,
        train_subset=settings.train_subset,
        test_subset=settings.test_subset,
    ).resolved()


def run_dir_for(config: TrainConfig, runs_dir: Path) -> Path:
    return Path(runs_dir) / f"{config.model}-{config.dataset}-{cache_key(config)}"


def train_or_reuse(
    config: TrainConfig, runs_dir: Path, reuse_only: bool, log: Callable[[str], None]
) -> tuple[dict, Path, bool]:
    """The results of a finished cached run, or of a new (or resumed) one."""
    run_dir = run_dir_for(config, runs_dir)
    run = Run(run_dir)
    if run.finished:
        log(f"{config.model}: reusing {run_dir}")
        return run.results(), run_dir, True
    if reuse_only:
        raise UserError(
            f"No finished run for {config.model} in {run_dir}; "
            "run without --reuse-only to train it."
        )
    config.out = str(run_dir)
    resume = run_dir if run.checkpoint_path.is_file() else None
    log(
        f"{config.model}: training {counted(config.epochs, 'epoch')} on "
        f"{config.train_subset or 'all'} training images into {run_dir}"
    )
    return fit(config, resume=resume, log=log), run_dir, False


def outcome_for(model: str, results: dict, run_dir: Path, reused: bool) -> ModelOutcome:
    """Combine a run's results with the model's own accounting (depth, parameters, MACs)."""
    spec = get_model_spec(model)
    network = get_model(model, num_classes=10)
    summary = summarize(network, spec.input_size, model).total
    history = Run(run_dir).history()
    return ModelOutcome(
        model=model,
        family=spec.family,
        year=spec.year,
        depth=int(summary["depth"]),
        params=int(summary["params"]),
        macs=int(summary["macs"]),
        test_error=float(results["top1_error"]),
        train_seconds=float(results["train_seconds"]),
        images_per_second=float(results["images_per_second"]),
        epochs=int(results["epochs"]),
        run_dir=str(run_dir),
        reused=reused,
        test_error_by_epoch=[row["eval_error"] for row in history],
    )


def run_evolution(
    settings: EvolutionSettings, log: Callable[[str], None] = print
) -> EvolutionResult:
    """Train (or reuse) every model of `settings.models` with the shared recipe; measure it."""
    if not settings.models:
        raise UserError("--models names no model; give at least one, e.g. lenet5,resnet_mini.")
    if len(set(settings.models)) != len(settings.models):
        raise UserError(f"--models names a model twice: {','.join(settings.models)}.")
    configs = [training_config(settings, model) for model in settings.models]
    data_dir = Path(settings.data_dir) if settings.data_dir else None
    available = len(load_dataset(settings.dataset, "train", data_dir).labels)
    started = time.perf_counter()
    outcomes, results = [], {}
    with cpu_threads(settings.threads) as threads:
        machine = {**hardware(), "torch_threads": threads}
        for config in configs:
            results, run_dir, reused = train_or_reuse(
                config, Path(settings.runs_dir), settings.reuse_only, log
            )
            outcomes.append(outcome_for(config.model, results, run_dir, reused))
    return EvolutionResult(
        settings={**asdict(settings), "models": list(settings.models)},
        outcomes=outcomes,
        num_train_images=min(available, settings.train_subset or available),
        num_test_images=int(results.get("num_examples", 0)),
        hardware=machine,
        seconds=time.perf_counter() - started,
    )
