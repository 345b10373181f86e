"""`convnet train` and `convnet demo`: one command for every data source, as one process or
under torchrun.

Every flag works for every data source or is refused with exit status 2 and the reason.
Under torchrun every rank runs this same code; only rank 0 prints, and a mistake is reported
once (by the lowest rank that made it) while the other ranks exit with status 2 quietly.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from convnet.commands.common import (
    Command,
    apply_threads,
    check_counts,
    download_if_asked,
    emit,
    log,
)
from convnet.commands.train_options import CONFIG_FLAGS, IMAGE_ONLY, configure_train
from convnet.errors import UserError
from convnet.i18n import check_language
from convnet.wording import counted


def _given(args: argparse.Namespace) -> dict:
    """The configuration fields set on the command line (CONFIG_FLAGS)."""
    return {name: getattr(args, name) for name in CONFIG_FLAGS if getattr(args, name) is not None}


def _refuse_misplaced(values: dict, images: bool, dataset: str | None) -> None:
    """Every flag works for the data source at hand, or is refused here."""
    if images:
        if "data_dir" in values:
            raise UserError(
                "--data-dir is the cache of registered data sets; with --data DIR "
                "it has no use. Drop it."
            )
        return
    misplaced = [f"--{name.replace('_', '-')}" for name in IMAGE_ONLY if name in values]
    if misplaced:
        raise UserError(
            f"{', '.join(misplaced)} appl{'ies' if len(misplaced) == 1 else 'y'} to image files "
            f"on disk (--data DIR) only; {dataset or 'mnist'} is held in memory, decoded and "
            "split once. Drop it, or train on an image folder."
        )


def refuse_for_shards(names: list[str], data: str | None) -> None:
    """The options (field names) that split a folder or find ILSVRC2012's labels do not
    apply to shards: their splits and labels were written into them."""
    from convnet.data.shard_manifest import is_shard_data

    if names and is_shard_data(data):
        given = [f"--{name.replace('_', '-')}" for name in names]
        raise UserError(
            f"{', '.join(given)} appl{'ies' if len(given) == 1 else 'y'} to image folders; the "
            f"shards {data} hold their splits and labels already ('convnet data shard "
            f"--val-fraction' splits a folder as it writes it). Drop "
            f"{'it' if len(given) == 1 else 'them'}."
        )


def build_config(args: argparse.Namespace):
    """The run's configuration: --config FILE or --recipe NAME (if given), with the flags
    given on top."""
    from convnet.engine.config import TrainConfig
    from convnet.engine.named_recipes import refuse_without_effect, with_recipe
    from convnet.engine.saved_config import check_model_options

    given = _given(args)
    if args.config and args.recipe:
        raise UserError(
            "--config starts from a run's whole configuration and --recipe from a named "
            "recipe; give one of the two."
        )
    values = with_recipe(given)
    base: dict = {}
    if args.config:
        try:
            base = TrainConfig.from_json(Path(args.config).read_text()).to_dict()
        except RecursionError:
            raise UserError(
                f"--config {args.config} nests deeper than any run configuration."
            ) from None
        except (OSError, ValueError, UnicodeDecodeError) as error:
            raise UserError(
                f"--config {args.config} is not a usable run configuration ({error})."
            ) from None
        for key in ("out", "classes", "world_size"):
            base.pop(key, None)
        if "model" in values:  # the recipe carries over to the registered model named
            base.pop("custom_module", None)
        was_images = bool(base.get("data"))
        if ("data" in values and not was_images) or ("dataset" in values and was_images):
            raise UserError(
                f"--config {args.config} is the configuration of a run on "
                f"{'image files' if was_images else 'a data set in memory'}; its recipe does not "
                "carry over to the other kind of source. Start that run without --config."
            )
        if "data" in values or "dataset" in values:  # the flag names the source
            base.pop("data", None), base.pop("dataset", None)
    merged = {**base, **values}
    refuse_without_effect(given, merged)
    if merged.get("data") and merged.get("dataset"):
        raise UserError("Give either --dataset NAME or --data DIR, not both.")
    if merged.get("data"):
        check_data_argument(merged["data"])
    _refuse_misplaced(values, bool(merged.get("data")), merged.get("dataset"))
    refuse_for_shards([name for name in ("val_fraction",) if name in values], merged.get("data"))
    if "model" not in merged:
        raise UserError(
            "Name a model to train (e.g. 'convnet train lenet5') or give --resume RUN_DIR."
        )
    config = TrainConfig(**merged)
    try:
        check_model_options(config)
    except ValueError as error:
        given = f"--config {args.config}" if args.config else f"--recipe {args.recipe}"
        raise UserError(f"{given}: {error}.") from None
    return config


def check_data_argument(data: str) -> None:
    """--data: a folder, or a brace pattern of shards; else exit 2 now, before any work."""
    from convnet.data.shard_manifest import is_pattern

    if not is_pattern(data) and not Path(data).expanduser().is_dir():
        raise UserError(f"Data folder {data} does not exist (or is not a folder).")


def _resume_changes(args: argparse.Namespace, rank: int = 0) -> dict:
    """The flags given with --resume: fit() accepts those a resumed run may change. Rank 0
    reads the run's configuration; another machine's rank may not see the run directory, so
    it passes what a resumed run may change (its own --data) and rank 0 judges the rest."""
    if args.config:
        raise UserError("--resume continues a run with its own configuration; drop --config.")
    return _changes(args, Path(args.resume), rank)


def _changes(args: argparse.Namespace, run_dir: Path, rank: int) -> dict:
    """The flags whose values differ from those `run_dir` was configured with (rank 0), or
    those a resumed run may change (other ranks)."""
    from convnet.engine.resume import RESUMABLE_CHANGES
    from convnet.engine.run import Run

    values = _given(args)
    if values.get("out") and Path(values["out"]).expanduser().resolve() == run_dir.resolve():
        del values["out"]  # the run's own directory (torchrun's restart of the same command)
    if rank != 0:
        return {key: value for key, value in values.items() if key in RESUMABLE_CHANGES}
    saved = Run(run_dir).read_config("resume")
    same = {key for key, value in values.items() if getattr(saved, key, object()) == value}
    changes = {key: value for key, value in values.items() if key not in same}
    _refuse_misplaced(changes, saved.data is not None or "data" in changes, saved.dataset)
    return changes


def _continues(args: argparse.Namespace) -> bool:
    """Whether this is a run torchrun may start again in --out: after a process failed
    (--max-restarts) or a machine joined again, the same command must continue the run from
    its checkpoint, or start it there if it had none. Which it is, rank 0 decides (fit's
    `restart`): TORCHELASTIC_RESTART_COUNT cannot tell, as each machine counts only its own
    failures."""
    return bool(os.environ.get("TORCHELASTIC_RUN_ID")) and bool(args.out) and not args.resume


def _report_missing(run_dir: Path, changes: dict) -> bool:
    """A finished run (results.json written) whose report is not there: a kill between the
    two, or a report deleted. `--resume` without more --epochs writes it again."""
    from convnet.engine.run import Run

    run = Run(run_dir)
    return "epochs" not in changes and run.finished and not run.report_path.is_file()


def _write_missing_report(args: argparse.Namespace, changes: dict) -> int:
    """The report of a finished run, from its weights and results.json; no training."""
    from convnet.engine.run import Run

    run = Run(args.resume)
    log(f"{run.path} has finished training but has no report; writing it (nothing is trained).")
    result = finish_run(
        run.path, run.results(), changes.get("device", "auto"), lang=check_language(args.lang)
    )
    emit(args, result, result_text(result))
    return 0


def _list_recipes(args: argparse.Namespace) -> int:
    """`convnet train --recipe list`: the named recipes and what each is."""
    import json

    from convnet.engine.named_recipes import RECIPES, recipe_names

    found = {name: json.loads((RECIPES / f"{name}.json").read_text()) for name in recipe_names()}
    text = "\n".join(f"{name}: {recipe['description']}" for name, recipe in found.items())
    emit(args, [{"name": name, **recipe} for name, recipe in found.items()], text)
    return 0


def _print_config(args: argparse.Namespace) -> int:
    """--print-config: the configuration the flags (and --recipe or --config) resolve to,
    as JSON, without training. The batch of a short run is fitted to the data at start."""
    import json

    from convnet.engine.run import Run

    config = Run(args.resume).read_config("resume") if args.resume else build_config(args)
    print(json.dumps(config.resolved().to_dict(), indent=2))
    return 0


def result_text(result: dict) -> str:
    split = result.get("split", "test")
    lines = [
        f"{result['model']} on {result.get('data_dir') or result['dataset']}: {split} error "
        f"{result['top1_error']:.2%} (top-5 {result['top5_error']:.2%}) on "
        f"{result['num_examples']:,} images"
    ]
    if "train_seconds" in result:
        lines.append(
            f"trained {result['epochs']} epoch{'s' if result['epochs'] != 1 else ''} in {result['train_seconds']:.1f} s "
            f"({_rate(result['images_per_second'])} images/s, {result['precision']} on "
            f"{result['device']}, {counted(result['world_size'], 'process', 'processes')} × batch "
            f"{result['batch_size']})"
        )
    kept = result.get("kept")
    if kept and (kept["weights"] != "model" or kept.get("patience") is not None):
        lines.append(
            f"kept: the {'moving average' if kept['weights'] != 'model' else 'weights'} of "
            f"epoch {kept['epoch']} of {kept['epochs_trained']}, {kept['why']}; the scores "
            "above are its"
        )
    for kind in ("easiest", "hardest"):  # only classes that stand apart (engine.metrics)
        named = ", ".join(f"{r['name']} {r['accuracy']:.2%}" for r in result[kind])
        lines.append(f"{kind}: {named or 'no class stands apart'}")
    if result.get("confusions"):
        lines.append(
            "most confused: "
            + ", ".join(f"{c['true']}→{c['predicted']} ×{c['count']}" for c in result["confusions"])
        )
    if result.get("num_skipped"):
        shown = result["skipped"][:10]
        lines.append(
            f"skipped {counted(result['num_skipped'], 'file')}: "
            + "; ".join(f"{s['file']} ({s['reason']})" for s in shown)
            + (
                f"; and {result['num_skipped'] - len(shown)} more"
                if result["num_skipped"] > 10
                else ""
            )
        )
    if result.get("num_left_out"):
        shown = result["left_out"][:10]
        more = result["num_left_out"] - len(shown)
        lines.append(
            f"left out {counted(result['num_left_out'], 'file')} that are not images to use: "
            + "; ".join(f"{s['file']} ({s['reason']})" for s in shown)
            + (f"; and {more} more" if more else "")
        )
    for key, label in (("run_dir", "run directory"), ("report", "report")):
        if key in result:
            lines.append(f"{label}: {result[key]}")
    return "\n".join(lines + result.get("warnings", []))


def finish_run(
    run_dir: Path,
    result: dict,
    device_name: str = "auto",
    precision: str = "auto",
    lang: str = "en",
) -> dict:
    """Score the saved weights of a finished run with their logits and write its report
    in `lang`."""
    from convnet.engine import run_lock
    from convnet.engine.device import resolve_device, resolve_precision
    from convnet.engine.evaluate import evaluate
    from convnet.engine.run import Run
    from convnet.report.run_report import write_run_report

    run = Run(run_dir)
    loaded = run.load()
    config = loaded.config
    device = resolve_device(device_name)
    source = loaded.evaluation_source(
        data_dir=Path(config.data_dir) if config.data_dir else None, workers=config.workers or 0
    )
    evaluation = evaluate(
        loaded.model.to(device), source, device, resolve_precision(precision, device)
    )
    with run_lock.holding(run.path, log):  # no second writer while the report is written
        report = write_run_report(run, loaded, evaluation, lang)
    result = {**result, "report": str(report)}
    result.pop("confusion_matrix", None)
    return result


def run_train(args: argparse.Namespace) -> int:
    from convnet.engine import distributed
    from convnet.engine.run import Run
    from convnet.engine.train import fit

    rank_text = os.environ.get("RANK", "0")
    launched_rank = int(rank_text) if rank_text.isdigit() else 0
    try:
        check_counts(
            args,
            "epochs",
            "batch_size",
            "train_subset",
            "test_subset",
            "stop_after_epoch",
            "checkpoint_every",
        )
        lang = check_language(args.lang)
        apply_threads(args)
        if args.recipe == "list":
            return _list_recipes(args)
        if args.print_config:
            return _print_config(args)
        restart = _continues(args)
        resume = args.resume or (args.out if restart else None)
        if args.resume:
            config, changes = None, _resume_changes(args, launched_rank)
            alone = os.environ.get("WORLD_SIZE", "1") == "1"  # not under torchrun
            if alone and not args.no_report and _report_missing(Path(args.resume), changes):
                return _write_missing_report(args, changes)
        else:
            config, changes = build_config(args), None
            config.validate()  # a bad value is refused before any process group forms
            if restart and (launched_rank != 0 or Run(args.out).checkpoint_path.is_file()):
                changes = _changes(args, Path(args.out), launched_rank)
        if launched_rank == 0:  # one process fetches; the others read the cache
            download_if_asked(args, config.model if config else "", config and config.weights)
        device_name = (changes or {}).get("device") or (config.device if config else "auto")
        session = distributed.start(
            device_name, args.backend or (config.backend if config else "auto")
        )
    except distributed.RankError:
        raise
    except UserError:
        if launched_rank != 0:  # every rank hit the same mistake: rank 0 reports it
            return 2
        raise
    try:
        result = fit(
            config,
            Path(resume) if resume else None,
            changes=changes,
            stop_after_epoch=args.stop_after_epoch,
            log=log,
            restart=restart,
        )
    except distributed.PeerFailure:
        return 2
    except UserError as error:
        if not session.is_main:
            raise UserError(f"(rank {session.rank}) {error}") from None
        raise
    except KeyboardInterrupt:
        if not session.is_main:
            return 130
        raise
    finally:
        distributed.stop()
    if not session.is_main:
        return 0
    if "stopped_after_epoch" in result:
        emit(
            args,
            result,
            f"Stopped after epoch {result['stopped_after_epoch']} of "
            f"{result['epochs']}; run directory: {result['run_dir']}",
        )
        return 0
    if args.no_report:
        result.pop("confusion_matrix", None)
    else:
        result = finish_run(
            Path(result["run_dir"]), result, session.device.type, result["precision"], lang
        )
    emit(args, result, result_text(result))
    return 0


COMMANDS: dict[str, Command] = {
    "train": Command(
        "train a model on a data set or an image folder; writes a run directory with weights "
        "and a report",
        configure_train,
        run_train,
    ),
}


def _rate(images_per_second: float) -> str:
    """Images per second with the digits that tell: 12,345, 42.7, 0.31."""
    if images_per_second >= 100:
        return f"{images_per_second:,.0f}"
    return f"{images_per_second:.3g}"
