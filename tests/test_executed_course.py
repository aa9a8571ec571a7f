"""What a reader sees in the notebooks that ``make course`` executed: quiet, honest outputs.

``make test-full`` runs the course first, in the workspace of a clean clone, so every
exercise is untouched there: each check must say ``Not attempted``. The noise is what a
learner would otherwise have to read past: progress-bar residue, warnings from libraries
below MLflow that nobody reading can act on, hardware banners, colour codes.
"""

import json
import re

import pytest

from tests.notebook_runner import NOTEBOOKS, executed_course

pytestmark = pytest.mark.full

COURSE = sorted(path.name for path in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
NOISE = [
    "IProgress not found",            # tqdm without ipywidgets
    "pkg_resources is deprecated",    # lightning_fabric's import
    "np.object", "np.bool",           # lightning-flash 0.8.2 and numpy
    "interpreted in multiple ways",   # MLflow's local dataset source, registered twice
    "GPU available:", "HPU available",  # Lightning's hardware banner
    "Runningstage",                   # trainer.test's rich table
    "Map:",                           # Hugging Face datasets' progress bars
    "Downloading artifacts",          # MLflow's progress bar for local copies
    "serialized using CloudPickle",   # pyfunc's warning for a python_model object
    "\x1b[",                          # ANSI colour codes
]
MOST_OUTPUTS = 25
CHECK = re.compile(r"\bex\d\d\.q\d+\.check\(\)")
# "About 25 minutes to read ...; the cells run in about 2 minutes": a time to read and to run.
TIME_LINE = re.compile(r"\d+\s*min(ute)?s?\b.*\bread.*\brun|\bread\b.*\d+\s*min", re.IGNORECASE | re.DOTALL)


def _executed():
    folder = executed_course()
    found = {name: folder / name for name in COURSE if (folder / name).is_file()}
    assert sorted(found) == COURSE, f"run `make course` first: {folder} lacks {sorted(set(COURSE) - set(found))}"
    return {name: json.loads(path.read_text(encoding="utf-8")) for name, path in found.items()}


def _text(output) -> str:
    if "text" in output:
        return "".join(output["text"])
    data = output.get("data", {})
    parts = [data.get("text/plain", ""), data.get("text/html", ""), data.get("text/markdown", "")]
    return "".join("".join(part) for part in parts) + "".join(output.get("traceback", []))


@pytest.fixture(scope="module")
def executed():
    return _executed()


@pytest.mark.parametrize("name", COURSE)
def test_no_noise_and_no_cell_floods_the_page(executed, name):
    problems = []
    for index, cell in enumerate(executed[name]["cells"]):
        if cell["cell_type"] != "code":
            continue
        outputs = cell.get("outputs", [])
        if len(outputs) > MOST_OUTPUTS:
            problems.append(f"cell {index} has {len(outputs)} outputs")
        text = "".join(_text(output) for output in outputs)
        problems += [f"cell {index} shows {noise!r}" for noise in NOISE if noise in text]
    assert problems == []


@pytest.mark.parametrize("name", COURSE)
def test_every_untouched_exercise_says_not_attempted(executed, name):
    cells = executed[name]["cells"]
    checks = [cell for cell in cells if cell["cell_type"] == "code" and CHECK.search("".join(cell["source"]))]
    assert len(checks) >= 2, f"{name} has {len(checks)} exercise checks"
    for cell in checks:
        printed = "".join(_text(o) for o in cell["outputs"] if o.get("name") == "stdout")
        assert printed.startswith("Not attempted"), printed


@pytest.mark.parametrize("name", COURSE)
def test_each_notebook_opens_with_its_time(executed, name):
    first = "".join(executed[name]["cells"][0]["source"])
    assert TIME_LINE.search(first), first[:300]
