"""The Chinese edition as a reader runs it: every notebook of notebooks/zh/ at its defaults, in
a new workspace, with no error, quiet and honest outputs, and every untouched exercise saying
``Not attempted`` in Chinese. (The English notebooks run at their defaults under nbval, and
the filled-in copies of the Chinese ones in tests/test_exercises_course.py and the tests they
name.)

The noise is what a learner would otherwise have to read past (tests/notebook_runner.py's
``NOISE``); and no secret shows. The executed copies are kept in ``$COURSE_OUTPUT/zh``
(build/executed/zh) to read.
"""

import re

import pytest

from tests.notebook_runner import NOTEBOOKS, TWINS, course_env, executed_course, noise_in, verdict_prefix
from tools import scan_secrets
from tools.runner import execute
from utils.workspace import Workspace

pytestmark = pytest.mark.full

COURSE = sorted(path.name for path in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
CHECK = re.compile(r"\bex\d\d\.q\d+\.check\(\)")


@pytest.mark.parametrize("name", COURSE)
def test_the_chinese_notebook_runs_at_its_defaults_and_reads_well(tmp_path, name):
    executed_copy = executed_course() / name
    notebook = execute(TWINS / name, executed_copy, env=course_env(tmp_path / "workspace"), cwd=TWINS)
    cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert noise_in(notebook.cells) == []
    checks = [cell for cell in cells if CHECK.search(cell.source)]
    assert len(checks) >= 2, f"{name} has {len(checks)} exercise checks"
    for cell in checks:
        printed = "".join(output.get("text", "") for output in cell.outputs if output.get("name") == "stdout")
        assert printed.startswith(verdict_prefix("Not attempted", "zh_CN")), printed
    # What this machine knows of: DATABRICKS_TOKEN, MLflow/PostgreSQL passwords in the
    # environment, the course server's admin password in the workspace (tests/test_secrets_scan.py).
    known = scan_secrets.known_secrets(workspace=Workspace(tmp_path / "workspace"))
    assert [str(finding) for finding in scan_secrets.scan_files([executed_copy], known)] == []
