"""The notebooks' preamble check."""

import os
import sys
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

from utils.env import check_environment
from utils.errors import CourseError


def test_course_environment_passes_and_reports_versions():
    found = check_environment()
    assert found["python"].startswith("3.11.")
    assert found["lightning-flash"] == "0.8.2"


def test_wrong_or_missing_packages_are_all_named():
    wanted = {"mlflow": SpecifierSet("<1"), "no-such-package-xyz": SpecifierSet(">=1")}
    with pytest.raises(CourseError) as error:
        check_environment(wanted)
    message = str(error.value)
    assert "mlflow" in message and "no-such-package-xyz is not installed" in message
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
