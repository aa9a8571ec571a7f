"""The notebooks' preamble check."""

import os
import sys
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

from packaging.version import Version

from utils.env import check_environment, read_requirements, supported_python
from utils.errors import CourseError


def test_course_environment_passes_and_reports_the_pinned_versions():
    found = check_environment()
    assert Version(found["python"]) in supported_python()
    pinned = {name for name, spec in read_requirements().items() if spec}
    assert {"lightning-flash", "pytorch-lightning", "torch", "mlflow"} <= pinned
    assert set(found) == {"python", *pinned}  # the table shows what the course pins, no more


def test_python_3_11_and_3_12_are_supported_and_3_13_is_not():
    # numpy<2, which lightning-flash needs, has no wheels for Python 3.13.
    assert "3.11.7" in supported_python() and "3.12.1" in supported_python()
    assert "3.13.0" not in supported_python() and "3.10.13" not in supported_python()


def test_another_requirements_file_can_be_checked_against(tmp_path, monkeypatch):
    (tmp_path / "requirements.in").write_text("# a comment\nmlflow[auth]>=99  # far future\npackaging\n")
    monkeypatch.setenv("COURSE_REQUIREMENTS", str(tmp_path / "requirements.in"))
    with pytest.raises(CourseError, match=r"mlflow 3\.\S+ \(the course needs >=99\)"):
        check_environment()


def test_wrong_or_missing_packages_are_all_named():
    wanted = {"mlflow": SpecifierSet("<1"), "no-such-package-xyz": SpecifierSet(">=1"),
              "another-missing-package": SpecifierSet()}
    with pytest.raises(CourseError) as error:
        check_environment(wanted)
    message = str(error.value)
    assert "mlflow" in message and "no-such-package-xyz is not installed (needs >=1)" in message
    assert "another-missing-package is not installed\n" in message
    assert "make setup" in message


def test_environment_commands_come_first_on_path(monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin")
    check_environment({})
    assert os.environ["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)


def test_temporary_environment_restores_set_and_unset_variables(monkeypatch):
    from utils.env import temporary_environment

    monkeypatch.setenv("COURSE_TEST_SET", "before")
    monkeypatch.delenv("COURSE_TEST_UNSET", raising=False)
    with temporary_environment(COURSE_TEST_SET=None, COURSE_TEST_UNSET="inside"):
        assert "COURSE_TEST_SET" not in os.environ
        assert os.environ["COURSE_TEST_UNSET"] == "inside"
        os.environ["COURSE_TEST_SET"] = "changed inside"
    assert os.environ["COURSE_TEST_SET"] == "before"
    assert "COURSE_TEST_UNSET" not in os.environ
