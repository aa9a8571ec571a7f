"""What a reader sees in the notebooks that ``make course`` executed: quiet, honest outputs.

``make test-full`` runs the course first, in the workspace of a clean clone, so every
exercise is untouched there: each check must say ``Not attempted``. The noise is what a
learner would otherwise have to read past (tests/notebook_runner.py's ``NOISE``); and no secret
shows.
"""

import json
import re

import pytest

from tests.notebook_runner import NOTEBOOKS, executed_course, noise_in
from tools import scan_secrets

pytestmark = pytest.mark.full

COURSE = sorted(path.name for path in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
CHECK = re.compile(r"\bex\d\d\.q\d+\.check\(\)")


@pytest.fixture(scope="module")
def executed():
    folder = executed_course()
    found = {name: folder / name for name in COURSE if (folder / name).is_file()}
    assert sorted(found) == COURSE, f"run `make course` first: {folder} lacks {sorted(set(COURSE) - set(found))}"
    return {name: json.loads(path.read_text(encoding="utf-8")) for name, path in found.items()}


@pytest.mark.parametrize("name", COURSE)
def test_no_noise_and_no_cell_floods_the_page(executed, name):
    assert noise_in(executed[name]["cells"]) == []


@pytest.mark.parametrize("name", COURSE)
def test_every_untouched_exercise_says_not_attempted(executed, name):
    checks = [cell for cell in executed[name]["cells"]
              if cell["cell_type"] == "code" and CHECK.search("".join(cell["source"]))]
    assert len(checks) >= 2, f"{name} has {len(checks)} exercise checks"
    for cell in checks:
        printed = "".join("".join(o.get("text", "")) for o in cell["outputs"] if o.get("name") == "stdout")
        assert printed.startswith("Not attempted"), printed


def test_no_executed_notebook_holds_a_secret(executed):
    # What this machine knows of: DATABRICKS_TOKEN, MLflow/PostgreSQL passwords in the
    # environment, the course server's admin password in the workspace (tests/test_secrets_scan.py).
    findings = scan_secrets.scan_files([executed_course() / name for name in COURSE], scan_secrets.known_secrets())
    assert [str(f) for f in findings] == []
