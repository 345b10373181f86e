"""The ILSVRC2012 validation set's labels, as the devkit and Kaggle ship them.

- `LOC_val_solution.csv` (Kaggle): ImageId, PredictionString whose first word is the
  image's WordNet id.
- The devkit (`ILSVRC2012_devkit_t12/data`): `ILSVRC2012_validation_ground_truth.txt` holds
  one ILSVRC2012_ID per image (line n for ILSVRC2012_val_%08d n), and `meta.mat` maps those
  ids to WordNet ids. The ids are not in sorted-WordNet-id order, and meta.mat also lists
  the parent synsets (num_children > 0), which are not classes.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from pathlib import Path

from convnet.errors import UserError

ILSVRC_VAL_NAME = re.compile(r"^ILSVRC2012_val_(\d{8})\.jpe?g$", re.IGNORECASE)
CSV_NAME = "LOC_val_solution.csv"
DEVKIT_TRUTH = "ILSVRC2012_validation_ground_truth.txt"
DEVKIT_META = "meta.mat"
DEVKIT_DATA = Path("ILSVRC2012_devkit_t12") / "data"
LISTED = 10  # how many names a message lists before "and N more"


def listing(items: Sequence[object]) -> str:
    """The first few items of a list for a message, then how many more."""
    shown = ", ".join(str(item) for item in items[:LISTED])
    return shown + (f" and {len(items) - LISTED} more" if len(items) > LISTED else "")


def is_flat_ilsvrc_val(folder: Path) -> bool:
    return folder.is_dir() and any(ILSVRC_VAL_NAME.match(p.name) for p in folder.iterdir())


def _read_csv_truth(path: Path) -> dict[int, str]:
    """LOC_val_solution.csv: ImageId, PredictionString whose first word is the WordNet id."""
    truth = {}
    try:
        with path.open(newline="") as handle:
            for row_number, row in enumerate(csv.DictReader(handle), start=2):
                match = re.search(r"(\d{8})$", (row.get("ImageId") or "").strip())
                words = (row.get("PredictionString") or "").split()
                if not match or not words:
                    raise ValueError(f"line {row_number} has no ImageId or PredictionString")
                truth[int(match.group(1))] = words[0]
    except (OSError, UnicodeDecodeError, ValueError, csv.Error) as error:
        raise UserError(f"Cannot read the ground truth {path}: {error}.") from None
    return truth


def _read_meta(path: Path) -> dict[int, str]:
    """meta.mat: devkit ILSVRC2012_ID -> WordNet id of the 1,000 leaf synsets (num_children 0);
    the parent synsets it also lists are not classes."""
    try:
        from scipy.io import loadmat

        synsets = loadmat(path, squeeze_me=True)["synsets"]
        rows = zip(synsets["ILSVRC2012_ID"], synsets["WNID"], synsets["num_children"], strict=True)
        return {int(i): str(wnid) for i, wnid, children in rows if int(children) == 0}
    except Exception as error:  # scipy raises many types for a damaged file
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(
            f"Cannot read the devkit's {path} ({reason}); it must be the ILSVRC2012 devkit's "
            "meta.mat with its 'synsets' table (ILSVRC2012_ID, WNID, num_children)."
        ) from None


def _read_devkit_truth(path: Path, meta: Path) -> dict[int, str]:
    """ILSVRC2012_validation_ground_truth.txt: line n is the ILSVRC2012_ID of image n."""
    synsets = _read_meta(meta)
    try:
        lines = path.read_text().split()
        ids = [int(line) for line in lines]
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise UserError(f"Cannot read the ground truth {path}: {error}.") from None
    unknown = sorted({i for i in ids if i not in synsets})
    if unknown:
        raise UserError(
            f"{path} names ILSVRC2012_IDs that {meta} has no leaf synset for: "
            f"{listing(unknown)}. Are they from different devkits?"
        )
    return {number: synsets[i] for number, i in enumerate(ids, start=1)}


def find_ground_truth(val_dir: Path, root: Path, given: Path | None) -> Path:
    if given is not None:
        if not Path(given).is_file():
            raise UserError(f"Ground-truth file {given} does not exist.")
        return Path(given)
    places = list(dict.fromkeys([root, val_dir, root.parent]))
    for place in places:
        if (place / CSV_NAME).is_file():
            return place / CSV_NAME
    for place in places:
        for folder in (place, place / DEVKIT_DATA):
            if (folder / DEVKIT_TRUTH).is_file():
                return folder / DEVKIT_TRUTH
    raise UserError(
        f"{val_dir} is an ILSVRC2012 validation folder, but no ground truth was found: put "
        f"{CSV_NAME} (Kaggle's) or the devkit's {DEVKIT_DATA / DEVKIT_TRUTH} with "
        f"{DEVKIT_META} in {root} or its parent."
    )


def read_ground_truth(path: Path) -> tuple[dict[int, str], list[str]]:
    """{image number: WordNet id} from either file, and the sorted WordNet ids of every class
    (the devkit's 1,000 leaf synsets; for the csv, those its images name)."""
    if path.name.endswith(".csv"):
        truth = _read_csv_truth(path)
        return truth, sorted(set(truth.values()))
    meta = path.parent / DEVKIT_META
    if not meta.is_file():
        raise UserError(
            f"{path} numbers classes by the devkit's ILSVRC2012_ID; the {DEVKIT_META} that maps "
            f"them to WordNet ids must be beside it, and {meta} does not exist."
        )
    return _read_devkit_truth(path, meta), sorted(_read_meta(meta).values())
