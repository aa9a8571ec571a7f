"""The IMDB data: the course's own subset, finding other copies, and the seeded subsets."""

import gzip
import hashlib
import io
import os
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from utils import data
from utils.errors import CourseError

SHIPPED = data.SHIPPED


def write_splits(folder: Path, rows: int = 6, drop_column: str | None = None) -> Path:
    """Three small CSVs shaped like the book's, ``rows`` per label and split."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, name in data.SPLIT_FILES.items():
        frame = pd.DataFrame({
            "review": [f"{split} review {i}, with a comma" for i in range(2 * rows)],
            "sentiment": ["positive", "negative"] * rows,
        })
        if drop_column:
            frame = frame.drop(columns=[drop_column])
        frame.to_csv(folder / name, index=False)
    return folder


@pytest.fixture
def small_data(tmp_path, monkeypatch):
    folder = write_splits(tmp_path / "imdb", rows=10)
    monkeypatch.setenv("COURSE_DATA_DIR", str(folder))
    return data.find_imdb()


# -- finding the data ----------------------------------------------------------------
def test_course_data_dir_is_used_and_counted(small_data):
    assert small_data.counts["train"] == {"negative": 10, "positive": 10}


def test_a_relative_course_data_dir_is_found_from_the_course_folder(tmp_path, monkeypatch):
    folder = write_splits(tmp_path / "imdb")
    elsewhere = tmp_path / "deep" / "er"
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)  # like a kernel started in notebooks/
    monkeypatch.setenv("COURSE_DATA_DIR", os.path.relpath(folder, data.repo_root()))
    assert data.find_imdb().path == folder.resolve()


def _neutral(folder):
    frame = pd.read_csv(folder / "test.csv")
    frame.loc[0, "sentiment"] = "neutral"
    frame.to_csv(folder / "test.csv", index=False)


@pytest.mark.parametrize("spoil, message", [
    (lambda folder: shutil.rmtree(folder), r"COURSE_DATA_DIR=.*imdb.*does not exist.*export COURSE_DATA_DIR="),
    (lambda folder: (folder / "valid.csv").unlink(), "has no valid.csv"),
    (lambda folder: write_splits(folder, drop_column="sentiment"), r"train.csv has no column 'sentiment'"),
    (_neutral, "test.csv: column 'sentiment' holds 'neutral'"),
], ids=["no-folder", "no-file", "no-column", "unknown-label"])
def test_a_course_data_dir_that_does_not_fit_is_named(tmp_path, monkeypatch, spoil, message):
    folder = write_splits(tmp_path / "imdb")
    spoil(folder)
    monkeypatch.setenv("COURSE_DATA_DIR", str(folder))
    with pytest.raises(CourseError, match=message):
        data.find_imdb()


# -- the course's own subset ----------------------------------------------------------
def test_without_course_data_dir_the_shipped_subset_is_used(monkeypatch):
    monkeypatch.delenv("COURSE_DATA_DIR", raising=False)
    assert data.find_imdb().path == SHIPPED.resolve()  # its files: the next test


def test_the_shipped_subset_is_what_its_source_record_says():
    """The decompressed files have the sha256 sums and counts that data/imdb/SOURCE.md lists."""
    record = (SHIPPED / "SOURCE.md").read_text(encoding="utf-8")
    assert "Maas" in record and "Learning Word Vectors for Sentiment Analysis" in record
    for split, name in data.SPLIT_FILES.items():
        raw = gzip.decompress((SHIPPED / f"{name}.gz").read_bytes())
        row = re.search(rf"^\| {name} \| ([\d,]+) \| ([\d,]+) \| ([\d,]+) \| (\d+) \| `([0-9a-f]{{64}})` \|$",
                        record, re.M)
        assert row, f"{name} is not in the table of SOURCE.md"
        rows, positive, negative, size, digest = row.groups()
        assert (len(raw), hashlib.sha256(raw).hexdigest()) == (int(size), digest), name
        frame = pd.read_csv(io.BytesIO(raw))
        assert list(frame.columns) == ["review", "sentiment"]
        assert frame["sentiment"].value_counts().to_dict() == {
            "positive": int(positive.replace(",", "")), "negative": int(negative.replace(",", ""))}
        assert len(frame) == int(rows.replace(",", ""))


def test_the_shipped_subset_is_balanced_clean_and_splits_do_not_overlap():
    frames = {split: pd.read_csv(data.split_file(SHIPPED, split)) for split in data.SPLIT_FILES}
    for split, frame in frames.items():
        assert set(frame["sentiment"]) == set(data.LABELS), split
        share = (frame["sentiment"] == "positive").mean()
        assert 0.45 < share < 0.55, f"{split} is not balanced: {share:.2f} positive"
        assert frame["review"].str.strip().str.len().min() > 0, f"{split} has an empty review"
        assert frame["review"].is_unique, f"{split} holds a review twice"
    seen = [set(frame["review"]) for frame in frames.values()]
    assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])


# -- subsets -----------------------------------------------------------------------------
def test_subset_is_balanced_and_the_same_for_the_same_seed(small_data, tmp_path):
    first = data.make_subset(8, 5, 4, seed=7, data=small_data, workspace_dir=tmp_path / "a")
    second = data.make_subset(8, 5, 4, seed=7, data=small_data, workspace_dir=tmp_path / "b")
    assert first.name == "imdb-8-5-4-seed7" and first.parent == tmp_path / "a" / "data"
    for name in ("train.csv", "valid.csv", "test.csv"):
        assert (first / name).read_bytes() == (second / name).read_bytes()
    train = pd.read_csv(first / "train.csv")
    assert list(train.columns) == ["review", "sentiment"]
    assert train["sentiment"].value_counts().to_dict() == {"positive": 4, "negative": 4}
    assert sorted(pd.read_csv(first / "valid.csv")["sentiment"].value_counts().tolist()) == [2, 3]
    assert train["review"].is_unique


def test_another_seed_gives_another_subset(small_data, tmp_path):
    one = data.make_subset(8, 4, 4, seed=1, data=small_data, workspace_dir=tmp_path)
    two = data.make_subset(8, 4, 4, seed=2, data=small_data, workspace_dir=tmp_path)
    assert (one / "train.csv").read_bytes() != (two / "train.csv").read_bytes()


@pytest.mark.parametrize("parameter, value", [("train_size", 21), ("val_size", 0), ("test_size", -3)])
def test_sizes_out_of_range_name_the_parameter_and_the_maximum(small_data, tmp_path, parameter, value):
    sizes = {"train_size": 8, "val_size": 4, "test_size": 4, parameter: value}
    with pytest.raises(CourseError, match=rf"{parameter}={value} is out of range: .* at most 20\b"):
        data.make_subset(**sizes, data=small_data, workspace_dir=tmp_path)


def test_the_shipped_subset_allows_the_rarer_labels_twice(monkeypatch):
    monkeypatch.delenv("COURSE_DATA_DIR", raising=False)
    found = data.find_imdb()
    rarer = min(found.counts["test"].values())
    with pytest.raises(CourseError, match=rf"test_size={2 * rarer + 1} .* at most {2 * rarer}\b"):
        data.check_sizes(found, test_size=2 * rarer + 1)
    assert data.check_sizes(found, test_size=2 * rarer) == {"test_size": 2 * rarer}
