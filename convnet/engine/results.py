"""What a run reports when it ends: results.json (the last evaluation, how training went, a
check that every replica holds the same weights) and which weights the run keeps."""

from __future__ import annotations

import torch

from convnet.engine import distributed
from convnet.engine.evaluate import Evaluation
from convnet.engine.guards import learning_warning, resumable_after_write_failure
from convnet.engine.prepare import Log, Training
from convnet.files import atomic_write_json


def best_epoch(t: Training) -> int:
    """The epoch whose kept weights (the moving average's, with --model-ema) had the lowest
    held-out error; the earliest of equals."""
    key = "ema_eval_error" if t.ema is not None else "eval_error"
    return min(t.state.history, key=lambda row: (row[key], row["epoch"]))["epoch"]


def results(t: Training, evaluation: Evaluation, log: Log) -> dict:
    """The run's results (rank 0; {} on the others), written to results.json: the last
    evaluation, how training went, and a check that every replica holds the same weights."""
    config, session, source = t.config, distributed.current(), t.source
    # Every replica must hold the same weights; a real check, since it is cheap.
    digests = (
        distributed.gather_objects(distributed.weight_digest(t.model))
        if session.distributed
        else []
    )
    if not session.is_main:
        return {}
    if len(set(digests)) > 1:
        log(f"Warning: the {len(digests)} replicas ended with different weights: {digests}")
    history, seconds = t.state.history, t.state.train_seconds
    seen = sum(row["images_per_second"] * row["epoch_seconds"] for row in history)
    result = {
        "model": config.model,
        "dataset": config.source_name,
        **({"data_dir": config.data} if config.data else {}),
        **evaluation.result,
        "params": sum(p.numel() for p in t.model.parameters()),
        "num_train_examples": source.train_count - len(source.failed_training),  # read
        "epochs": len(t.state.history),  # trained: fewer than planned where --patience stopped
        "train_seconds": round(seconds, 3),
        "images_per_second": round(seen / max(seconds, 1e-9), 1),
        "precision": t.precision,
        "device": str(session.device),
        "threads": torch.get_num_threads(),
        "world_size": session.world_size,
        "backend": session.backend,
        "batch_size": config.batch_size,
        "global_batch_size": config.batch_size * session.world_size,
        "replicas_identical": len(set(digests)) <= 1,
        "run_dir": str(t.run.path),
    }
    if digests:
        result["weight_digests"] = digests
    result["kept"] = _kept_description(t)
    if t.frozen:
        result["frozen"] = {"patterns": list(config.freeze), "parameters": list(t.frozen)}
    warnings = [learning_warning(t.run.steps(), len(config.classes))]
    if config.patience is not None and source.eval_split == "test":
        warnings.append(
            f"Warning: --patience chose epoch {result['kept']['epoch']} by its test error, so "
            "that error is an optimistic estimate (the test images took part in the choice). "
            "For an unbiased one, early-stop on a validation split: an image folder with val/, "
            "or convnet.fit with a (training, validation) pair."
        )
    result["warnings"] = [*result.get("warnings", []), *filter(None, warnings)]
    for index in sorted(source.failed_training):
        path, why = source.training_failure(index)
        result["skipped"].append({"file": path, "reason": why})
    result["num_skipped"] = len(result["skipped"])
    if source.kind == "images":  # how the images were read, as `convnet evaluate` reports it
        result["layout"], result["workers"] = source.layout, config.workers
        result["preprocessing"] = {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in source.preprocessing.items()
        }
    with resumable_after_write_failure(t.run):
        atomic_write_json(t.run.results_path, result)
    return result


def _kept_description(t: Training) -> dict:
    """Which weights model.safetensors holds and why, for results.json and the report."""
    epoch = best_epoch(t) if t.config.patience is not None else len(t.state.history)
    weights = "moving average" if t.ema is not None else "model"
    why = (
        f"the {t.source.eval_split} error's best epoch (--patience {t.config.patience})"
        if t.config.patience is not None
        else "the last epoch"
    )
    return {
        "weights": weights,
        "epoch": epoch,
        "epochs_trained": len(t.state.history),
        "patience": t.config.patience,
        "why": why,
    }
