"""The IMDB movie reviews the course trains on, and the small subsets it trains with.

The data is three CSV files, ``train.csv``, ``valid.csv`` and ``test.csv`` (or the same
compressed with gzip, ``train.csv.gz`` ...), each with the columns ``review`` (the text) and
``sentiment`` (``positive`` or ``negative``), as in the book's archive. Where they come from:

1. the folder named by ``COURSE_DATA_DIR``, any copy of the three files;
2. otherwise ``<course>/data/imdb``: the course's own subset of 4,596 reviews, shipped in
   the repository with its source and citation (``data/imdb/SOURCE.md``). Nothing is
   downloaded.

Training on all of it takes too long on a laptop CPU, so every run uses a balanced,
seeded subset that :func:`make_subset` writes into the course workspace.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from utils.errors import CourseError
from utils.workspace import get_workspace, repo_root

DATA_DIR_ENV = "COURSE_DATA_DIR"
COLUMNS = ("review", "sentiment")
LABELS = ("negative", "positive")
# CSV file of each split, and the notebook parameter that sets the split's size.
SPLIT_FILES = {"train": "train.csv", "valid": "valid.csv", "test": "test.csv"}
SIZE_PARAMETERS = {"train_size": "train", "val_size": "valid", "test_size": "test"}


def course_data_dir() -> Path:
    """``<course>/data/imdb``: the course's own subset, shipped in the repository."""
    return repo_root() / "data" / "imdb"


def _set_it_up_hint(lead: str = "Point") -> str:
    return (
        f"{lead} {DATA_DIR_ENV} at a folder holding train.csv, valid.csv and test.csv "
        f"(columns {', '.join(COLUMNS)}), for example "
        f"`export {DATA_DIR_ENV}=/path/to/imdb` in the terminal that starts Jupyter, or "
        f"`os.environ['{DATA_DIR_ENV}'] = '/path/to/imdb'` in the notebook before this cell."
    )


# -- checking a folder ---------------------------------------------------------------
@dataclass(frozen=True)
class ImdbFolder:
    """A checked copy of the data: its folder and the rows per label of each split."""

    path: Path
    counts: dict[str, dict[str, int]]  # split -> label -> rows

    def file(self, split: str) -> Path:
        return split_file(self.path, split)


def split_file(folder: Path, split: str) -> Path:
    """``<folder>/<split>.csv``, or ``<split>.csv.gz`` when only the compressed file is there."""
    plain = folder / SPLIT_FILES[split]
    compressed = plain.with_name(plain.name + ".gz")
    return compressed if compressed.is_file() and not plain.is_file() else plain


def read_split(path: Path) -> pd.DataFrame:
    """Read one split's CSV and check it; raise :class:`CourseError` naming what is wrong."""
    if not path.is_file():
        raise CourseError(f"The data folder {path.parent} has no {path.name}.")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise CourseError(f"{path} is not a readable CSV file ({error}).") from None
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise CourseError(
            f"{path} has no column {', '.join(repr(c) for c in missing)} "
            f"(it has {', '.join(map(repr, frame.columns))}; the course needs {', '.join(COLUMNS)})."
        )
    frame = frame[list(COLUMNS)]
    empty = frame["review"].isna() | (frame["review"].astype(str).str.strip() == "")
    if empty.any():
        raise CourseError(f"{path} has {int(empty.sum())} rows with an empty review.")
    unknown = sorted(set(frame["sentiment"].astype(str)) - set(LABELS))
    if unknown:
        raise CourseError(
            f"{path}: column 'sentiment' holds {', '.join(map(repr, unknown[:5]))}; "
            f"the course expects only {' and '.join(LABELS)}."
        )
    absent = [label for label in LABELS if label not in set(frame["sentiment"])]
    if absent:
        raise CourseError(f"{path} has no {' or '.join(absent)} reviews; each split needs both labels.")
    return frame


def validate_imdb_folder(path: Path | str) -> ImdbFolder:
    """Check that ``path`` holds the three CSV files with the expected columns and labels."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise CourseError(f"The data folder {path} does not exist.")
    counts = {}
    for split in SPLIT_FILES:
        frame = read_split(split_file(path, split))
        counts[split] = {label: int((frame["sentiment"] == label).sum()) for label in LABELS}
    return ImdbFolder(path.resolve(), counts)


# -- finding the data ----------------------------------------------------
def _configured_folder(configured: str) -> Path:
    """``COURSE_DATA_DIR`` as a folder; a relative one is looked up from the working
    directory, then from the course folder (notebooks run inside ``notebooks/``)."""
    path = Path(configured).expanduser()
    if path.is_absolute() or path.is_dir():
        return path
    from_course = repo_root() / path
    return from_course if from_course.is_dir() else path


def find_imdb() -> ImdbFolder:
    """The IMDB data: the folder ``COURSE_DATA_DIR`` names, else the course's own subset."""
    configured = os.environ.get(DATA_DIR_ENV, "").strip()
    if configured:
        try:
            return validate_imdb_folder(_configured_folder(configured))
        except CourseError as error:
            raise CourseError(
                f"{DATA_DIR_ENV}={configured} does not point at a usable copy of the data: "
                f"{error} {_set_it_up_hint()}"
            ) from None
    shipped = course_data_dir()
    try:
        return validate_imdb_folder(shipped)
    except CourseError as error:
        raise CourseError(
            f"The course's own data in {shipped} is missing or damaged: {error} It comes with "
            "the repository: restore it with `git checkout -- data/imdb`, or "
            f"{_set_it_up_hint('point')}"
        ) from None


def max_size(counts: dict[str, int]) -> int:
    """The largest balanced subset a split allows: twice its rarer label's rows."""
    return 2 * min(counts.values())


def check_sizes(data: ImdbFolder, **sizes: object) -> dict[str, int]:
    """Check ``train_size``, ``val_size`` and ``test_size`` against the rows available.

    Each must be a whole number from 2 (one review per label) to twice the rows of the
    split's rarer label, so that the subset can be balanced.
    """
    checked = {}
    for parameter, value in sizes.items():
        split = SIZE_PARAMETERS[parameter]
        largest = max_size(data.counts[split])
        if isinstance(value, bool) or not isinstance(value, int):
            raise CourseError(f"{parameter} must be a whole number; got {value!r}.")
        if not 2 <= value <= largest:
            raise CourseError(
                f"{parameter}={value} is out of range: it must be at least 2 (one review per "
                f"label) and at most {largest}, because {SPLIT_FILES[split]} in {data.path} has "
                f"{data.counts[split]['negative']} negative and {data.counts[split]['positive']} "
                "positive reviews and the subset takes as many of each."
            )
        checked[parameter] = value
    return checked


def _balanced_sample(frame: pd.DataFrame, size: int, rng) -> pd.DataFrame:
    """``size`` rows, half of each label (the odd one from a label the generator picks)."""
    per_label = {label: size // 2 for label in LABELS}
    if size % 2:
        per_label[LABELS[rng.integers(len(LABELS))]] += 1
    parts = []
    for label in LABELS:
        rows = frame[frame["sentiment"] == label]
        chosen = rng.permutation(len(rows))[: per_label[label]]
        parts.append(rows.iloc[sorted(chosen)])
    sample = pd.concat(parts)
    return sample.iloc[rng.permutation(len(sample))].reset_index(drop=True)


def make_subset(
    train_size: int,
    val_size: int,
    test_size: int,
    seed: int = 42,
    data: ImdbFolder | None = None,
    workspace_dir: Path | None = None,
) -> Path:
    """Write a balanced, seeded subset into ``<workspace>/data/`` and return its folder.

    The folder, ``imdb-<train>-<val>-<test>-seed<seed>``, holds ``train.csv``,
    ``valid.csv`` and ``test.csv`` with the columns ``review,sentiment``. Every split has
    as many positive as negative reviews (one more of one label for an odd size), and the
    same sizes and seed always give the same rows in the same order.
    """
    import numpy as np

    data = data or find_imdb()
    check_sizes(data, train_size=train_size, val_size=val_size, test_size=test_size)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise CourseError(f"seed must be a whole number >= 0; got {seed!r}.")
    sizes = {"train": train_size, "valid": val_size, "test": test_size}
    workspace_dir = Path(workspace_dir) if workspace_dir else get_workspace().path
    folder = workspace_dir / "data" / f"imdb-{train_size}-{val_size}-{test_size}-seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for split, name in SPLIT_FILES.items():
        sample = _balanced_sample(read_split(data.file(split)), sizes[split], rng)
        # Written beside and renamed: a reader never sees half a file.
        partial = folder / f".{name}.partial-{os.getpid()}"
        sample.to_csv(partial, index=False)
        os.replace(partial, folder / name)
    return folder
