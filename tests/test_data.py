"""The IMDB data: the course's own subset, finding other copies, the book's archive (an
explicit download), and the seeded subsets.

Nothing here touches the internet: downloads come from a real HTTP server on loopback,
and "offline" is a loopback port nobody listens on.
"""

import gzip
import hashlib
import http.server
import io
import os
import re
import threading
import zipfile
from functools import partial
from pathlib import Path

import pandas as pd
import pytest

from utils import data
from utils.errors import CourseError
from utils.tracking import find_free_port

SHIPPED = data.course_data_dir()


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


def zip_of(folder: Path, arcroot: str = "imdb") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(folder.iterdir()):
            archive.write(path, f"{arcroot}/{path.name}")
    return buffer.getvalue()


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


def test_missing_folder_named_by_course_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(CourseError, match=r"COURSE_DATA_DIR=.*nowhere.*does not exist.*export COURSE_DATA_DIR="):
        data.find_imdb()


def test_missing_file_is_named(tmp_path, monkeypatch):
    folder = write_splits(tmp_path / "imdb")
    (folder / "valid.csv").unlink()
    monkeypatch.setenv("COURSE_DATA_DIR", str(folder))
    with pytest.raises(CourseError, match="has no valid.csv"):
        data.find_imdb()


def test_missing_column_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_DATA_DIR", str(write_splits(tmp_path / "imdb", drop_column="sentiment")))
    with pytest.raises(CourseError, match=r"train.csv has no column 'sentiment'"):
        data.find_imdb()


def test_unknown_labels_are_named(tmp_path, monkeypatch):
    folder = write_splits(tmp_path / "imdb")
    frame = pd.read_csv(folder / "test.csv")
    frame.loc[0, "sentiment"] = "neutral"
    frame.to_csv(folder / "test.csv", index=False)
    monkeypatch.setenv("COURSE_DATA_DIR", str(folder))
    with pytest.raises(CourseError, match="test.csv: column 'sentiment' holds 'neutral'"):
        data.find_imdb()


# -- the course's own subset ----------------------------------------------------------
def test_without_course_data_dir_the_shipped_subset_is_used(monkeypatch):
    monkeypatch.delenv("COURSE_DATA_DIR", raising=False)
    found = data.find_imdb()
    assert found.path == SHIPPED.resolve()
    assert {split: sum(counts.values()) for split, counts in found.counts.items()} == {
        "train": 3497, "valid": 749, "test": 350}


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


# -- the book's archive: an explicit download ------------------------------------------------
def test_offline_download_says_the_course_does_not_need_it(tmp_path):
    with pytest.raises(CourseError) as error:
        data.download_imdb(f"http://127.0.0.1:{find_free_port()}/imdb.zip", tmp_path / "data" / "imdb-book")
    message = str(error.value)
    assert "offline" in message and "its own subset in data/imdb is used by default" in message
    assert list((tmp_path / "data").iterdir()) == []


@pytest.fixture
def archive_server(tmp_path):
    """A real HTTP server on loopback serving ``imdb.zip`` built from small CSVs."""
    served = tmp_path / "served"
    served.mkdir()
    payload = zip_of(write_splits(tmp_path / "source"))
    (served / "imdb.zip").write_bytes(payload)
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/imdb.zip", hashlib.sha256(payload).hexdigest()
    server.shutdown()
    server.server_close()


def test_download_unpacks_checks_and_is_then_named_by_course_data_dir(archive_server, tmp_path, monkeypatch):
    url, _ = archive_server
    found = data.download_imdb(url, tmp_path / "data" / "imdb-book")
    assert found.path == (tmp_path / "data" / "imdb-book").resolve()
    assert found.counts["test"] == {"negative": 6, "positive": 6}
    # Nothing but the unpacked folder is left behind (no archive, no temporary folders).
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["imdb-book"]
    monkeypatch.setenv("COURSE_DATA_DIR", str(found.path))
    assert data.find_imdb().path == found.path


def test_the_download_command_reports_size_time_and_how_to_use_it(archive_server, tmp_path, monkeypatch, capsys):
    url, _ = archive_server
    monkeypatch.setattr(data, "IMDB_URL", url)
    assert data.main(["download", "--to", str(tmp_path / "book")]) == 0
    said = capsys.readouterr().out
    assert re.search(r"^36 reviews \(\d+ MB of CSV\) in .*book, in \d+ s\.$", said, re.M)
    assert f"export COURSE_DATA_DIR={(tmp_path / 'book').resolve()}" in said


def test_download_with_the_known_checksum(archive_server, tmp_path, monkeypatch):
    url, digest = archive_server
    monkeypatch.setattr(data, "IMDB_ARCHIVE_SHA256", digest)
    assert data.download_imdb(url, tmp_path / "data" / "imdb-book").counts["valid"]["positive"] == 6


def test_download_with_a_wrong_checksum_unpacks_nothing(archive_server, tmp_path, monkeypatch):
    url, _ = archive_server
    monkeypatch.setattr(data, "IMDB_ARCHIVE_SHA256", "0" * 64)
    with pytest.raises(CourseError, match="has sha256 .* not the expected 0000"):
        data.download_imdb(url, tmp_path / "data" / "imdb-book")
    assert list((tmp_path / "data").iterdir()) == []


# -- unpacking -----------------------------------------------------------------------------
def test_unpack_a_good_archive(tmp_path):
    archive = tmp_path / "imdb.zip"
    archive.write_bytes(zip_of(write_splits(tmp_path / "src")))
    found = data.unpack_imdb(archive, tmp_path / "data" / "imdb-book")
    assert sorted(p.name for p in found.path.iterdir()) == ["test.csv", "train.csv", "valid.csv"]


def test_unpack_rejects_an_archive_with_a_missing_column(tmp_path):
    archive = tmp_path / "imdb.zip"
    archive.write_bytes(zip_of(write_splits(tmp_path / "src", drop_column="review")))
    with pytest.raises(CourseError, match="not the expected data: .*no column 'review'"):
        data.unpack_imdb(archive, tmp_path / "data" / "imdb-book")
    assert list((tmp_path / "data").iterdir()) == []


def test_unpack_rejects_an_archive_without_the_imdb_folder(tmp_path):
    archive = tmp_path / "imdb.zip"
    archive.write_bytes(zip_of(write_splits(tmp_path / "src"), arcroot="other"))
    with pytest.raises(CourseError, match="does not hold an imdb/ folder .*other"):
        data.unpack_imdb(archive, tmp_path / "data" / "imdb-book")


def test_unpack_rejects_entries_outside_the_folder(tmp_path):
    archive = tmp_path / "imdb.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("../escape.txt", "x")
    with pytest.raises(CourseError, match="unsafe entry"):
        data.unpack_imdb(archive, tmp_path / "data" / "inner")
    assert not (tmp_path / "data" / "escape.txt").exists()


def test_unpack_rejects_a_file_that_is_not_a_zip(tmp_path):
    archive = tmp_path / "imdb.zip"
    archive.write_text("<html>not found</html>")
    with pytest.raises(CourseError, match="not a zip archive"):
        data.unpack_imdb(archive, tmp_path / "data" / "imdb-book")


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


def test_a_size_must_be_a_whole_number(small_data, tmp_path):
    with pytest.raises(CourseError, match="val_size must be a whole number; got 2.5"):
        data.make_subset(8, 2.5, 4, data=small_data, workspace_dir=tmp_path)


def test_the_shipped_subset_allows_the_rarer_labels_twice(monkeypatch):
    monkeypatch.delenv("COURSE_DATA_DIR", raising=False)
    found = data.find_imdb()
    rarer = min(found.counts["test"].values())
    with pytest.raises(CourseError, match=rf"test_size={2 * rarer + 1} .* at most {2 * rarer}\b"):
        data.check_sizes(found, test_size=2 * rarer + 1)
    assert data.check_sizes(found, test_size=2 * rarer) == {"test_size": 2 * rarer}
