"""Committed notebooks are clean: no outputs, no secrets, no machine paths, runnable headless;
and every link to a notebook's heading finds it."""

import json
import re
import subprocess
from pathlib import Path

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


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_clean_and_ready_for_a_reader(path):
    notebook = json.loads(path.read_text(encoding="utf-8"))
    assert notebook["metadata"]["kernelspec"]["name"] == "python3"
    code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    assert all(cell.get("outputs") == [] and cell.get("execution_count") is None for cell in code), \
        f"{path.name}: a code cell has outputs or an execution count"
    # One parameters cell, then the check of the environment first.
    tagged = [cell for cell in notebook["cells"] if "parameters" in cell["metadata"].get("tags", [])]
    assert len(tagged) == 1 and tagged[0]["cell_type"] == "code"
    first_after_parameters = next(cell for cell in code if cell is not tagged[0])
    assert "print_environment()" in "".join(first_after_parameters["source"])
    # The first cell says how long the notebook takes to read and to run.
    first = "".join(notebook["cells"][0]["source"])
    assert re.search(r"minutes to read", first) and re.search(r"\brun in\b", first), first[:300]


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


# -- links to a heading: README.md's and the notebooks' own ---------------------------------------
LINK = re.compile(r"\]\((?P<target>[^)\s#]*)#(?P<anchor>[^)\s]+)\)")


def anchor(heading: str) -> str:
    """The anchor JupyterLab gives a Markdown heading: its text as shown (no backticks,
    emphasis or link syntax), spaces replaced by `-`."""
    text = re.sub(r"\[([^]]*)\]\([^)]*\)", r"\1", heading)
    return re.sub(r"[`*]", "", text).strip().replace(" ", "-")


def headings(cells) -> set[str]:
    found = set()
    for cell in cells:
        if cell["cell_type"] == "markdown":
            source = re.sub(r"^```.*?^```", "", "".join(cell["source"]), flags=re.M | re.S)
            found |= {anchor(title) for title in re.findall(r"^#{1,6}\s+(.+?)\s*#*$", source, re.M)}
    return found


def broken_links(text: str, where: Path, anchors: dict[str, set[str]]) -> list[str]:
    """Links in ``text`` (of the file ``where``) to a heading of a course notebook, which
    ``anchors`` (notebook file name: its headings' anchors) does not hold."""
    broken = []
    for link in LINK.finditer(text):
        target = link["target"]
        name = Path(target).name if target else where.name
        if name.endswith(".ipynb") and (target == "" or (where.parent / target).resolve().parent == ROOT / "notebooks"):
            if link["anchor"] not in anchors.get(name, set()):
                broken.append(f"{where.name}: {target}#{link['anchor']}")
    return broken


def test_every_link_to_a_notebook_heading_finds_it():
    cells = {path: json.loads(path.read_text(encoding="utf-8"))["cells"] for path in NOTEBOOKS}
    anchors = {path.name: headings(cells[path]) for path in NOTEBOOKS}
    documents = {ROOT / "README.md": (ROOT / "README.md").read_text(encoding="utf-8")}
    documents.update({path: "\n".join("".join(c["source"]) for c in cells[path] if c["cell_type"] == "markdown")
                      for path in NOTEBOOKS})
    links = sum(len(LINK.findall(text)) for text in documents.values())
    assert links >= 20  # the README's table of errors alone has 11
    assert [problem for path, text in documents.items() for problem in broken_links(text, path, anchors)] == []


def test_a_link_to_a_missing_or_misspelt_heading_is_caught():
    anchors = {"03_first_autologged_run.ipynb": headings(
        [{"cell_type": "markdown", "source": ["### Exercise 03.2: pooling, compared\n", "`x`"]},
         {"cell_type": "markdown", "source": ["## Start with `mlflow doctor`"]}])}
    readme, notebook = ROOT / "README.md", ROOT / "notebooks" / "03_first_autologged_run.ipynb"
    assert broken_links("[a](#Exercise-03.2:-pooling,-compared) [b](03_first_autologged_run.ipynb#Start-with-"
                        "mlflow-doctor) [c](https://example.org/page#Anything)", notebook, anchors) == []
    assert broken_links("[a](notebooks/03_first_autologged_run.ipynb#Start-with-mlflow-doctor)", readme, anchors) == []
    for text, where in (("[a](#Exercise-03.2:-pooling-compared)", notebook),
                        ("[b](notebooks/03_first_autologged_run.ipynb#Start-with-`mlflow`-doctor)", readme),
                        ("[c](06_troubleshooting.ipynb#A-port-in-use)", notebook)):  # a notebook without it
        assert broken_links(text, where, anchors) == [f"{where.name}: {text[4:-1]}"]
