"""Committed notebooks are clean: no outputs, no secrets, no machine paths, runnable headless."""

import json
import re
import subprocess

import pytest

from utils.workspace import repo_root

ROOT = repo_root()
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
# Paths that only exist on one machine, and strings shaped like Databricks tokens.
# (Built from parts so that this file does not match itself.)
MACHINE_PATH = re.compile("|".join(["/" + "work/", "/" + "tmp/[a-z]", "/" + "root/", "/" + "home/[a-z]"]))
TOKEN = re.compile(r"dapi[0-9a-f]{32}")


def _tracked_text_files():
    listed = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.split()
    for name in listed:
        path = ROOT / name
        if path.suffix in {".png", ".jpg", ".gz", ".zip"} or not path.is_file():
            continue
        yield path


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found under notebooks/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_clean(path):
    notebook = json.loads(path.read_text(encoding="utf-8"))
    assert notebook["metadata"]["kernelspec"]["name"] == "python3"
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [], f"{path.name}: a code cell has outputs"
            assert cell.get("execution_count") is None, f"{path.name}: execution counts"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_one_parameters_cell(path):
    notebook = json.loads(path.read_text(encoding="utf-8"))
    tagged = [c for c in notebook["cells"] if "parameters" in c["metadata"].get("tags", [])]
    assert len(tagged) == 1 and tagged[0]["cell_type"] == "code"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_starts_with_the_environment_check(path):
    notebook = json.loads(path.read_text(encoding="utf-8"))
    code = [c for c in notebook["cells"] if c["cell_type"] == "code"]
    first_after_parameters = next(
        c for c in code if "parameters" not in c["metadata"].get("tags", [])
    )
    assert "print_environment()" in "".join(first_after_parameters["source"])


def test_no_machine_paths_or_tokens_in_tracked_files():
    offenders = []
    for path in _tracked_text_files():
        text = path.read_text(encoding="utf-8", errors="ignore")
        for pattern in (MACHINE_PATH, TOKEN):
            if pattern.search(text):
                offenders.append(f"{path.relative_to(ROOT)}: {pattern.search(text).group(0)}")
    assert offenders == []


# The course's prose, over every notebook's markdown cells: short enough to read, each fact
# said once (about 16,000 words before it was cut).
PROSE_WORDS = 13_000


def test_the_course_prose_stays_within_its_length():
    words = {path.name: sum(len("".join(c["source"]).split())
                            for c in json.loads(path.read_text(encoding="utf-8"))["cells"]
                            if c["cell_type"] == "markdown")
             for path in NOTEBOOKS}
    assert sum(words.values()) <= PROSE_WORDS, words


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_says_how_long_it_takes(path):
    first = "".join(json.loads(path.read_text(encoding="utf-8"))["cells"][0]["source"])
    assert re.search(r"minutes to read", first) and re.search(r"\brun in\b", first), first[:300]
