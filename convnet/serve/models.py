"""The two networks the web page compares: a LeNet-5 CNN and an ordinary (MLP) network.

Given run directories, they are loaded; otherwise the newest suitable runs under `runs/`
are used, and where there is none, one is trained now — one epoch on MNIST, which takes
seconds on a laptop CPU. Both quick runs use the same settings (no augmentation), so the
page's comparison under shifts differs in architecture only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from convnet.engine.config import TrainConfig
from convnet.engine.run import LoadedModel, Run, load_run, newest_run
from convnet.engine.train import fit
from convnet.errors import UserError

CNN, ORDINARY = "cnn", "ordinary"
DEFAULT_MODELS = {CNN: "lenet5", ORDINARY: "mlp"}
ROLE_TITLES = {CNN: "CNN", ORDINARY: "ordinary network"}
CNN_LAYERS = ("c1", "s2", "c3", "s4", "c5")  # LeNet-5's feature layers, in order
EXPECTED_INPUT = (1, 32, 32)
QUICK_EPOCHS = 1


@dataclass
class ServedModel:
    """A loaded network, its role on the page, and a sentence saying where it came from."""

    role: str
    loaded: LoadedModel
    origin: str
    test_error: float | None = None

    def describe(self) -> dict:
        config = self.loaded.config
        return {
            "role": self.role,
            "name": self.loaded.name,
            "description": self.loaded.spec.description,
            "params": sum(p.numel() for p in self.loaded.model.parameters()),
            "origin": self.origin,
            "test_error": self.test_error,
            "epochs": config.epochs if config else None,
            "augment": config.augment if config else None,
            "train_images": config.train_subset if config else None,
        }


@dataclass
class ServedModels:
    cnn: ServedModel
    ordinary: ServedModel

    def all(self) -> list[ServedModel]:
        return [self.cnn, self.ordinary]


def role_of(loaded: LoadedModel) -> str:
    """CNN if the model has LeNet-5's layers C1…C5, ordinary if it is an MLP; else refuse."""
    features = getattr(loaded.model, "features", None)
    names = {name for name, _ in features.named_children()} if features is not None else set()
    if loaded.input_size != EXPECTED_INPUT or len(loaded.class_names) != 10:
        raise UserError(
            f"The page needs models of 10 classes on 1×32×32 input (MNIST digits); "
            f"{loaded.name} has {len(loaded.class_names)} classes on "
            f"{'×'.join(map(str, loaded.input_size))} input."
        )
    if set(CNN_LAYERS) <= names:
        return CNN
    if loaded.spec.family == "MLP":
        return ORDINARY
    raise UserError(
        f"The page shows LeNet-5 CNNs (layers C1…C5) and ordinary MLP networks; "
        f"{loaded.name} is neither."
    )


def find_newest_run(runs_root: Path, model: str, dataset: str = "mnist") -> Path | None:
    """The finished run directly under `runs_root` with the newest weights of `model`."""
    run = newest_run(runs_root, model, dataset)
    return run.path if run else None


def train_quickly(
    model: str,
    runs_root: Path,
    data_dir: Path | None = None,
    train_subset: int | None = None,
    test_subset: int | None = None,
    batch_size: int | None = None,
    log: Callable[[str], None] = print,
) -> tuple[Path, float, dict]:
    """Train `model` for one epoch on MNIST into a new run directory; return it, seconds, result."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    config = TrainConfig(
        model=model, dataset="mnist", data_dir=str(data_dir) if data_dir else None,
        epochs=QUICK_EPOCHS, augment=False, train_subset=train_subset, test_subset=test_subset,
        batch_size=batch_size,
        out=str(Path(runs_root) / f"{model}-mnist-serve-{stamp}"),
    )  # fmt: skip
    started = time.perf_counter()
    result = fit(config, log=log)
    return Path(result["run_dir"]), time.perf_counter() - started, result


def prepare_models(
    run_dirs: Sequence[Path] = (),
    runs_root: Path = Path("runs"),
    data_dir: Path | None = None,
    train_subset: int | None = None,
    test_subset: int | None = None,
    batch_size: int | None = None,
    log: Callable[[str], None] = print,
) -> ServedModels:
    """Load the given runs; fill each missing role from the newest run, else train one now.

    `train_subset`, `test_subset` and `batch_size` shorten that training (tests use them)."""
    served: dict[str, ServedModel] = {}
    for run_dir in run_dirs:
        loaded = load_run(Path(run_dir))
        role = role_of(loaded)
        if role in served:
            raise UserError(
                f"Two {ROLE_TITLES[role]} runs were given ({served[role].loaded.name} and "
                f"{loaded.name} from {Path(run_dir).name}); give at most one of each."
            )
        origin = f"run {Path(run_dir).name} (given with --run)"
        served[role] = ServedModel(role, loaded, origin, Run(run_dir).test_error())
    for role, model in DEFAULT_MODELS.items():
        if role in served:
            continue
        run_dir = find_newest_run(runs_root, model)
        if run_dir is not None:
            origin = f"newest run of {model} found: {run_dir.name}"
        else:
            log(f"No run of {model} under {runs_root}; training one now (1 epoch on MNIST) …")
            run_dir, seconds, _ = train_quickly(
                model, runs_root, data_dir, train_subset, test_subset, batch_size, log
            )
            images = f"{train_subset:,}" if train_subset else "all"
            origin = (
                f"no run of {model} was found, so it was trained when the server started: "
                f"{QUICK_EPOCHS} epoch on {images} MNIST training images in {seconds:.1f} s "
                f"(saved as {run_dir.name})"
            )
        loaded = load_run(run_dir)
        if role_of(loaded) != role:
            raise UserError(f"Run {run_dir.name} does not hold a {ROLE_TITLES[role]}.")
        served[role] = ServedModel(role, loaded, origin, Run(run_dir).test_error())
        log(f"{ROLE_TITLES[role]}: {model} — {origin}")
    for entry in served.values():
        entry.loaded.model.to("cpu").eval()
    return ServedModels(cnn=served[CNN], ordinary=served[ORDINARY])
