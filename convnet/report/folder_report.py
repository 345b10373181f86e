"""The report of an image-folder run: a Markdown page beside the run's files (rank 0 writes it)."""

from __future__ import annotations

from pathlib import Path

from convnet.engine.checkpoint import atomic_write_text

REPORT_FILE = "report.md"


def _table(header: list[str], rows: list[list[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.2%}"


def write_folder_report(run_dir: Path, result: dict, history: list[dict]) -> Path:
    """Validation errors, per-epoch metrics, easiest/hardest classes, confusions, skipped files."""
    lines = [
        f"# {result['model']} on {result['data_dir']}", "",
        f"Validation: top-1 error **{_percent(result['top1_error'])}**, top-5 error "
        f"**{_percent(result['top5_error'])}** on {result['num_examples']:,} images.", "",
        f"Trained {result['epochs']} epochs in {result['train_seconds']:.1f} s "
        f"({result['images_per_second']:,.0f} images/s) by {result['world_size']} process(es) × "
        f"batch {result['batch_size']} = global batch {result['global_batch_size']}, "
        f"{result['precision']} on {result['device']}; {result['params']:,} parameters.", "",
        "## Epochs", "",
        *_table(["epoch", "train loss", "train error", "val loss", "val error", "val top-5 error",
                 "images/s"],
                [[int(row["epoch"]), row["train_loss"], _percent(row["train_error"]), row["val_loss"],
                  _percent(row["val_error"]), _percent(row["val_top5_error"]),
                  f"{row['images_per_second']:,.0f}"] for row in history]),
        "", "## Easiest and hardest classes", "",
        *_table(["", "class", "accuracy", "images"],
                [[kind, row["name"], _percent(row["accuracy"]), row["count"]]
                 for kind, rows in (("easiest", result["easiest"]), ("hardest", result["hardest"]))
                 for row in rows]),
    ]  # fmt: skip
    if result.get("confusions"):
        lines += ["", "## Most frequent confusions", "",
                  *_table(["true class", "predicted", "times"],
                          [[c["true"], c["predicted"], c["count"]] for c in result["confusions"]])]  # fmt: skip
    if result.get("skipped"):
        lines += ["", f"## Skipped files ({len(result['skipped'])})", "",
                  *(f"- {item['file']}: {item['reason']}" for item in result["skipped"])]  # fmt: skip
    path = Path(run_dir) / REPORT_FILE
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path
