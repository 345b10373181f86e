"""Claims 1, 3 and 5: how test accuracy falls as the test digits are shifted, turned,
resized, made noisy and elastically distorted — a CNN against an ordinary network.

Each model is trained plainly and with the training augmentation (random shift ±2 px,
rotation ±10°, scale 0.9–1.1, `TrainConfig.augment`), and every CNN with a `pooling`
option is also trained with average pooling and with its pooling replaced by a stride-2
convolution (the pooling ablation), all three with the same recipe as the plain network
and each with `seeds` seeds, so that claim 3's comparison shows its spread. Runs are
cached under a runs directory keyed by their configuration, so the next call with the same
settings reuses them instead of training again.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from convnet.data.datasets import load_dataset
from convnet.data.distortions import DISTORTIONS
from convnet.data.transforms import to_model_input
from convnet.engine.config import TrainConfig
from convnet.engine.device import resolve_device, resolve_precision
from convnet.engine.evaluate import predict_logits
from convnet.engine.run import Run, cache_key, load_run
from convnet.engine.train import fit
from convnet.errors import UserError
from convnet.experiments import CachedRunSettings, cpu_threads
from convnet.models import get_model_spec
from convnet.wording import counted

VARIANT_KINDS = ("plain", "augmented", "average", "ablation")
# The kinds that compare ways to halve the maps (claim 3), each trained with every seed, and
# the `pooling` option each gives the model (None: the model's own, max pooling for lenet5).
POOLING_KINDS = {"plain": None, "average": "avg", "ablation": "conv"}
DEFAULT_SEEDS = 3
# Also left out of the cache key: the held-out share scored does not change the weights.
NOT_IN_KEY = ("test_subset",)


@dataclass
class InvarianceSettings(CachedRunSettings):
    models: tuple[str, ...] = ("lenet5", "mlp")
    variants: tuple[str, ...] = VARIANT_KINDS
    epochs: int | None = None  # None: each model's default
    distortions: tuple[str, ...] = tuple(DISTORTIONS)
    seeds: int = DEFAULT_SEEDS  # seeds seed, seed + 1, … of each pooling kind (claim 3)


@dataclass
class Variant:
    label: str
    model: str
    kind: str  # plain | augmented | average | ablation
    config: dict
    run_dir: str = ""
    reused: bool = False
    train_seconds: float = 0.0
    seed: int = 0
    first_seed: bool = True  # the settings' own seed: the variant every comparison uses
    test_error_by_epoch: list[float] = field(default_factory=list)


@dataclass
class Curve:
    distortion: str
    label: str
    levels: list[float]
    accuracy: dict[str, list[float]]  # variant label -> accuracy at each level


@dataclass
class InvarianceResult:
    settings: dict
    variants: list[Variant]
    curves: list[Curve]
    num_test_images: int
    seconds: float
    pair: tuple[str, str] | None = field(default=None)  # (CNN, MLP) compared in `gaps`

    def first_seed(self) -> list[Variant]:
        """One variant of each kind and model: those trained with the settings' seed."""
        return [variant for variant in self.variants if variant.first_seed]

    def curve(self, distortion: str) -> Curve:
        return next(c for c in self.curves if c.distortion == distortion)

    def mean_accuracy(self, distortion: str, label: str) -> float:
        values = self.curve(distortion).accuracy[label]
        return sum(values) / len(values)

    def clean_accuracy(self, label: str) -> float:
        curve = self.curves[0]
        identity = DISTORTIONS[curve.distortion].identity
        return curve.accuracy[label][curve.levels.index(identity)]

    def gaps(self) -> list[dict]:
        """Per distortion: CNN minus MLP mean accuracy, plainly and with augmentation, and
        the share of the plain gap that augmentation closes."""
        if self.pair is None:
            return []
        cnn, mlp = self.pair
        labels = {v.label for v in self.variants}
        rows = []
        for curve in self.curves:
            row = {
                "distortion": curve.distortion,
                "plain_gap": self.mean_accuracy(curve.distortion, cnn)
                - self.mean_accuracy(curve.distortion, mlp),
            }
            augmented = (f"{cnn} + augmentation", f"{mlp} + augmentation")
            if set(augmented) <= labels:
                row["augmented_gap"] = self.mean_accuracy(
                    curve.distortion, augmented[0]
                ) - self.mean_accuracy(curve.distortion, augmented[1])
                row["closed"] = (
                    1 - row["augmented_gap"] / row["plain_gap"]
                    if abs(row["plain_gap"]) > 1e-9
                    else None
                )
            rows.append({k: (round(v, 6) if isinstance(v, float) else v) for k, v in row.items()})
        return rows

    def to_dict(self) -> dict:
        return {
            "settings": self.settings,
            "num_test_images": self.num_test_images,
            "seconds": round(self.seconds, 2),
            "variants": [
                {**asdict(v), "clean_accuracy": round(self.clean_accuracy(v.label), 6)}
                for v in self.variants
            ],
            "curves": [asdict(c) for c in self.curves],
            "mean_accuracy": {
                c.distortion: {
                    label: round(self.mean_accuracy(c.distortion, label), 6) for label in c.accuracy
                }
                for c in self.curves
            },
            "pair": list(self.pair) if self.pair else None,
            "gaps": self.gaps(),
            "pooling": {
                kind: {
                    name: {"mean": _mean(values), "min": min(values), "max": max(values)}
                    for name, values in by_measure.items()
                }
                for kind, by_measure in self.pooling().items()
            },
        }

    def pooling(self) -> dict[str, dict[str, list[float]]]:
        """Claim 3 over the seeds: for each pooling kind of the compared CNN (plain, i.e. its
        max pooling; average; ablation) that was trained, "clean" and each distortion -> the
        accuracy of every seed (clean) or its mean over the sweep."""
        cnn = self.pair[0] if self.pair else None
        cnn = cnn or next(
            (v.model for v in self.variants if v.kind in ("average", "ablation")), None
        )
        found: dict[str, dict[str, list[float]]] = {}
        for variant in self.variants:
            if variant.model != cnn or variant.kind not in POOLING_KINDS:
                continue
            measures = found.setdefault(variant.kind, {"clean": []})
            measures["clean"].append(self.clean_accuracy(variant.label))
            for curve in self.curves:
                measures.setdefault(curve.distortion, []).append(
                    self.mean_accuracy(curve.distortion, variant.label)
                )
        return found


def _mean(values: list[float]) -> float:
    return round(sum(values) / len(values), 6)


def _has_pooling_option(model: str) -> bool:
    return "pooling" in inspect.signature(get_model_spec(model).builder).parameters


def plan_variants(settings: InvarianceSettings) -> list[Variant]:
    """The runs the experiment needs, each with its full training configuration."""
    unknown = set(settings.variants) - set(VARIANT_KINDS)
    if unknown:
        raise UserError(
            f"Unknown variant(s) {', '.join(sorted(unknown))}; use {', '.join(VARIANT_KINDS)}."
        )
    if settings.seeds < 1:
        raise UserError(f"--seeds must be at least 1, not {settings.seeds}.")
    variants = []
    for model in settings.models:
        get_model_spec(model)  # fails clearly on an unknown name

        def variant(kind: str, seed: int, model: str = model) -> Variant:
            pooling = POOLING_KINDS.get(kind)
            config = TrainConfig(
                model=model,
                epochs=settings.epochs,
                train_subset=settings.train_subset,
                augment=kind == "augmented",
                seed=seed,
                precision=settings.precision,
                device=settings.device,
                data_dir=settings.data_dir,
                test_subset=settings.test_subset,
                model_config={"pooling": pooling} if pooling else {},
            ).resolved()
            label = {
                "plain": model,
                "augmented": f"{model} + augmentation",
                "average": f"{model} (average pooling)",
                "ablation": f"{model} (pooling → stride-2 conv)",
            }[kind]
            first = seed == settings.seed
            return Variant(
                label if first else f"{label} · seed {seed}",
                model,
                kind,
                asdict(config),
                seed=seed,
                first_seed=first,
            )

        pooled = _has_pooling_option(model)
        for kind in VARIANT_KINDS:
            if kind not in settings.variants or (kind in ("average", "ablation") and not pooled):
                continue
            seeds = settings.seeds if kind in POOLING_KINDS and pooled else 1
            variants += [variant(kind, settings.seed + offset) for offset in range(seeds)]
    return variants


def run_dir_for(variant: Variant, runs_dir: Path) -> Path:
    pooling = variant.config["model_config"].get("pooling")
    name = "-".join(
        [variant.model]
        + ([f"pool{pooling}"] if pooling else [])
        + (["aug"] if variant.config["augment"] else [])
        + [cache_key(variant.config, NOT_IN_KEY)]
    )
    return Path(runs_dir) / name


def train_or_reuse(
    variant: Variant, runs_dir: Path, reuse_only: bool = False, log: Callable[[str], None] = print
) -> Variant:
    """Fill in `variant.run_dir`: a finished cached run, or a new (or resumed) one."""
    run_dir = run_dir_for(variant, runs_dir)
    variant.run_dir = str(run_dir)
    run = Run(run_dir)
    if run.finished:
        variant.reused = True
        results = run.results()
        variant.train_seconds = float(results.get("train_seconds", 0.0))
        variant.test_error_by_epoch = [row["eval_error"] for row in run.history()]
        log(f"{variant.label}: reusing {run_dir}")
        return variant
    if reuse_only:
        raise UserError(
            f"No finished run for {variant.label} in {run_dir}; "
            "run without --reuse-only to train it."
        )
    config = TrainConfig(**{**variant.config, "out": str(run_dir)})
    resume = run_dir if run.checkpoint_path.is_file() else None
    log(
        f"{variant.label}: training {counted(config.epochs, 'epoch')} on "
        f"{config.train_subset or 'all'} training images into {run_dir}"
    )
    results = fit(config, resume=resume, log=log)
    variant.train_seconds = float(results["train_seconds"])
    variant.test_error_by_epoch = [row["eval_error"] for row in run.history()]
    return variant


def _accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return round((logits.argmax(1) == labels).float().mean().item(), 6)


def _pair(variants: list[Variant]) -> tuple[str, str] | None:
    plain = [v for v in variants if v.kind == "plain" and v.first_seed]
    cnn = next((v.model for v in plain if get_model_spec(v.model).family != "MLP"), None)
    mlp = next((v.model for v in plain if get_model_spec(v.model).family == "MLP"), None)
    return (cnn, mlp) if cnn and mlp else None


def run_invariance(
    settings: InvarianceSettings, log: Callable[[str], None] = print
) -> InvarianceResult:
    """Train or reuse every variant, then sweep every distortion over the test images."""
    with cpu_threads(settings.threads):
        return _run_invariance(settings, log)


def _run_invariance(settings: InvarianceSettings, log: Callable[[str], None]) -> InvarianceResult:
    started = time.perf_counter()
    unknown = set(settings.distortions) - set(DISTORTIONS)
    if unknown:
        raise UserError(
            f"Unknown distortion(s) {', '.join(sorted(unknown))}; use {', '.join(DISTORTIONS)}."
        )
    variants = plan_variants(settings)
    if not variants:
        raise UserError("Nothing to measure: choose at least one model and one variant.")
    for variant in variants:
        train_or_reuse(variant, Path(settings.runs_dir), settings.reuse_only, log)

    data_dir = Path(settings.data_dir) if settings.data_dir else None
    test = load_dataset("mnist", "test", data_dir)
    if settings.test_subset:
        test = test.subset(settings.test_subset)
    device = resolve_device(settings.device)
    precision = resolve_precision(settings.precision, device)
    loaded = {v.label: load_run(Path(v.run_dir)) for v in variants}
    sizes = {item.spec.input_size for item in loaded.values()}
    if len(sizes) != 1:
        raise UserError(
            "The models take inputs of different sizes; compare models of one input size."
        )
    images = to_model_input(test.images, sizes.pop())
    for item in loaded.values():
        item.model.to(device)

    curves = [
        Curve(
            name,
            DISTORTIONS[name].label,
            list(DISTORTIONS[name].levels),
            {v.label: [] for v in variants},
        )
        for name in settings.distortions
    ]
    steps = sum(len(c.levels) for c in curves)
    with tqdm(total=steps, desc="distortions", unit="level", mininterval=0.5) as progress:
        for curve in curves:
            distortion = DISTORTIONS[curve.distortion]
            for level in curve.levels:
                distorted = distortion.apply(images, level)  # once, shared by every model
                for label, item in loaded.items():
                    logits = predict_logits(
                        item.model, distorted, item.spec.normalization, device, precision
                    )
                    curve.accuracy[label].append(_accuracy(logits, test.labels))
                progress.update()
    return InvarianceResult(
        settings=asdict(settings),
        variants=variants,
        curves=curves,
        num_test_images=len(test),
        seconds=time.perf_counter() - started,
        pair=_pair(variants),
    )
