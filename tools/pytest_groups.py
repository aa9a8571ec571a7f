"""Which tests must run in one process, one after the other: the groups that conftest.py
gives pytest-xdist's workers (``make test`` and ``make test-full`` run two).

- The notebooks under nbval form two groups, each run in course order in a workspace of its
  own: 03, 04 and 05 (04 and 05 reuse 03's run), and 01, 02, 06 and 07 (each stands alone).
- The tests of one file form a group, so that their module fixtures run once; a file whose
  module fixture is parametrized forms one group per value.
- The files that share the session fixtures of notebook 03's runs (tests/conftest.py) form
  one group between them.
"""

from __future__ import annotations

import re
from pathlib import Path

NOTEBOOK_GROUPS = {"03": "notebooks-03-04-05", "04": "notebooks-03-04-05", "05": "notebooks-03-04-05",
                   "01": "notebooks-01-02-06", "02": "notebooks-01-02-06", "06": "notebooks-01-02-06",
                   "07": "notebooks-01-02-06"}
# The test files that use the session fixtures notebook03_default and notebook03_again
# (tests/conftest.py).
NOTEBOOK03_DEFAULT_USERS = {"test_notebook03.py", "test_sentiment_model.py", "test_run_record.py"}
# Test files whose module fixture is parametrized: one group per value (each fixture runs
# once), the value read from the test's id.
SPLIT_BY_PARAMETER = {"test_team_server.py": re.compile(r"\[(open|basic-auth)\]"),
                      "test_exercises_course.py": re.compile(r"\[(\d\d)_\w+\.ipynb")}
# The longest groups first (measured: the full tier's slowest), so that the workers finish
# together; the others follow in collection order.
LONGEST_FIRST = ["test_team_server.py[basic-auth]", "test_notebooks_04_05.py", "test_notebook07.py",
                 "test_exercises_course.py[08]", "notebook03-default", "test_batch.py", "test_notebook06.py",
                 "test_team_server.py[open]", "test_project.py", "notebooks-03-04-05", "notebooks-01-02-06"]


def group_of(nodeid: str) -> str:
    """The group of tests that must run in one process, one after the other (see above)."""
    file = Path(nodeid.split("::", 1)[0]).name
    if file.endswith(".ipynb"):
        return NOTEBOOK_GROUPS.get(file[:2], file)
    if file in NOTEBOOK03_DEFAULT_USERS:
        return "notebook03-default"
    split = SPLIT_BY_PARAMETER.get(file)
    found = split.search(nodeid) if split else None
    return f"{file}[{found.group(1)}]" if found else file
