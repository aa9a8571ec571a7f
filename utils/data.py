"""The IMDB reviews the course trains on: ``train``, ``valid`` and ``test`` CSV files (or
``.csv.gz``) with the columns ``review`` and ``sentiment``, from ``$COURSE_DATA_DIR`` or the
course's own ``data/imdb`` (nothing is downloaded), and the balanced, seeded subsets runs use.
"""

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from utils.errors import CourseError
from utils.i18n import N_
from utils.i18n import gettext as _
from utils.workspace import get_workspace, repo_root

DATA_DIR_ENV = "COURSE_DATA_DIR"
SHIPPED = repo_root() / "data" / "imdb"  # the course's own subset, in the repository
COLUMNS = ("review", "sentiment")
LABELS = ("negative", "positive")
SPLIT_FILES = {"train": "train.csv", "valid": "valid.csv", "test": "test.csv"}
SIZE_PARAMETERS = {"train_size": "train", "val_size": "valid", "test_size": "test"}
# How to point the course at a copy of the data: shown as _(SET_IT_UP).format(variable=DATA_DIR_ENV).
SET_IT_UP = N_("Point {variable} at a folder holding train.csv, valid.csv and test.csv (columns "
               "review, sentiment): `export {variable}=/path/to/imdb` before starting Jupyter, or "
               "`os.environ['{variable}'] = '/path/to/imdb'` in the notebook.")


@dataclass(frozen=True)
class ImdbFolder:
    """A checked copy of the data: its folder and the rows per label of each split."""
    path: Path
    counts: dict[str, dict[str, int]]  # split -> label -> rows


def split_file(folder: Path, split: str) -> Path:
    """``<folder>/<split>.csv``, or ``<split>.csv.gz`` when only the compressed file is there."""
    plain = folder / SPLIT_FILES[split]
    compressed = plain.with_name(plain.name + ".gz")
    return compressed if compressed.is_file() and not plain.is_file() else plain


def read_split(path: Path) -> pd.DataFrame:
    """Read one split's CSV and check it; raise :class:`CourseError` naming what is wrong."""
    if not path.is_file():
        raise CourseError(_("The data folder {folder} has no {name}.").format(
            folder=path.parent, name=path.name))
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise CourseError(_("{path} is not a readable CSV file ({error}).").format(
            path=path, error=error)) from None
    if missing := [c for c in COLUMNS if c not in frame.columns]:
        raise CourseError(_("{path} has no column {missing} (it has {columns}; the course needs "
                            "both).").format(path=path, missing=", ".join(map(repr, missing)),
                                             columns=", ".join(map(repr, frame.columns))))
    frame = frame[list(COLUMNS)]
    if (empty := frame["review"].isna() | (frame["review"].astype(str).str.strip() == "")).any():
        raise CourseError(_("{path} has {count} rows with an empty review.").format(
            path=path, count=int(empty.sum())))
    if unknown := sorted(set(frame["sentiment"].astype(str)) - set(LABELS)):
        raise CourseError(_("{path}: column 'sentiment' holds {values}; the course expects only "
                            "{negative} and {positive}.").format(
                                path=path, values=", ".join(map(repr, unknown[:5])),
                                negative=LABELS[0], positive=LABELS[1]))
    return frame


def find_imdb() -> ImdbFolder:
    """The IMDB data: the folder ``COURSE_DATA_DIR`` names, else the course's own subset."""
    configured = os.environ.get(DATA_DIR_ENV, "").strip()
    path = Path(configured).expanduser() if configured else SHIPPED
    # Relative: from the working directory, else from the course folder (as notebooks/ is).
    if not (path.is_absolute() or path.is_dir()) and (repo_root() / path).is_dir():
        path = repo_root() / path
    try:
        if not path.is_dir():
            raise CourseError(_("The data folder {path} does not exist.").format(path=path))
        labels = {split: read_split(split_file(path, split))["sentiment"] for split in SPLIT_FILES}
    except CourseError as error:
        where = (_("{variable}={value} does not point at a usable copy of the data").format(
                     variable=DATA_DIR_ENV, value=configured) if configured else
                 _("The course's own data in {path} is missing or damaged (it comes with the "
                   "repository: restore it with `git checkout -- data/imdb`)").format(path=SHIPPED))
        raise CourseError(_("{where}: {error} {set_it_up}").format(
            where=where, error=error, set_it_up=_(SET_IT_UP).format(variable=DATA_DIR_ENV))) from None
    counts = {split: {label: int((column == label).sum()) for label in LABELS}
              for split, column in labels.items()}
    return ImdbFolder(path.resolve(), counts)


def check_sizes(data: ImdbFolder, **sizes: int) -> dict[str, int]:
    """Check ``train_size``, ``val_size`` and ``test_size`` (whole numbers): each from 2 (one
    review per label) to twice the rows of the split's rarer label, for a balanced subset."""
    for parameter, value in sizes.items():
        split = SIZE_PARAMETERS[parameter]
        counts = data.counts[split]
        if not 2 <= value <= 2 * min(counts.values()):
            raise CourseError(_(
                "{parameter}={value} is out of range: it must be at least 2 (one review per "
                "label) and at most {maximum}, because {file} in {folder} has {negative} negative "
                "and {positive} positive reviews and the subset takes as many of each."
            ).format(parameter=parameter, value=value, maximum=2 * min(counts.values()),
                     file=SPLIT_FILES[split], folder=data.path, negative=counts["negative"],
                     positive=counts["positive"]))
    return dict(sizes)


def _balanced_sample(frame: pd.DataFrame, size: int, rng) -> pd.DataFrame:
    """``size`` rows, half of each label (the odd one from a label the generator picks)."""
    per_label = {label: size // 2 for label in LABELS}
    if size % 2:
        per_label[LABELS[rng.integers(len(LABELS))]] += 1
    groups = {label: frame[frame["sentiment"] == label] for label in LABELS}
    sample = pd.concat([rows.iloc[sorted(rng.permutation(len(rows))[: per_label[label]])]
                        for label, rows in groups.items()])
    return sample.iloc[rng.permutation(len(sample))].reset_index(drop=True)


def make_subset(train_size: int, val_size: int, test_size: int, seed: int = 42,
                data: ImdbFolder | None = None, workspace_dir: Path | None = None) -> Path:
    """Write a balanced subset into ``<workspace>/data/imdb-<train>-<val>-<test>-seed<seed>``
    and return that folder; the same sizes and seed always give the same rows in order."""
    import numpy as np

    data = data or find_imdb()
    check_sizes(data, train_size=train_size, val_size=val_size, test_size=test_size)
    workspace_dir = Path(workspace_dir) if workspace_dir else get_workspace().path
    folder = workspace_dir / "data" / f"imdb-{train_size}-{val_size}-{test_size}-seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for (split, name), size in zip(SPLIT_FILES.items(), (train_size, val_size, test_size)):
        sample = _balanced_sample(read_split(split_file(data.path, split)), size, rng)
        # Written beside and renamed: a reader never sees half a file.
        partial = folder / f".{name}.partial-{os.getpid()}"
        sample.to_csv(partial, index=False)
        os.replace(partial, folder / name)
    return folder
