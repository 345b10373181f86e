"""Shards for the tests: a miniature image folder written by `convnet data shard`, and the
damaged shards another writer could have produced (a manifest that describes their bytes,
so that only what they hold is wrong)."""

from __future__ import annotations

import json
from pathlib import Path

from convnet.data.shard_manifest import MANIFEST_NAME, sha256_of
from convnet.data.shard_writer import write_shards


def make_shards(folder: Path, out: Path, shard_size: str = "7", **options) -> Path:
    """`convnet data shard FOLDER --out OUT --shard-size SIZE`, quietly; returns OUT."""
    write_shards(folder, out, shard_size, **options)
    return out


def manifest(out: Path) -> dict:
    return json.loads((out / MANIFEST_NAME).read_text())


def describe_again(out: Path, name: str) -> None:
    """The manifest's size and SHA-256 of shard `name` set to its bytes as they are now: a
    writer that wrote the damaged shard itself, not a shard damaged since."""
    document = manifest(out)
    for split in document["splits"].values():
        for shard in split["shards"]:
            if shard["name"] == name:
                shard["bytes"] = (out / name).stat().st_size
                shard["sha256"] = sha256_of(out / name)
    (out / MANIFEST_NAME).write_text(json.dumps(document))


def rewrite_shard(out: Path, name: str, change) -> None:
    """Shard `name` written again with `change(sample)` applied to each of its samples (a
    dict as webdataset reads it, raw bytes), then described again."""
    import webdataset

    samples = list(webdataset.WebDataset(str(out / name), shardshuffle=False, empty_check=False))
    with (out / name).open("wb") as handle:
        writer = webdataset.TarWriter(handle, encoder=False)
        for sample in samples:
            kept = {k: v for k, v in sample.items() if k == "__key__" or not k.startswith("__")}
            sample = change(kept)
            if sample is not None:
                writer.write(sample)
        writer.close()
    describe_again(out, name)
