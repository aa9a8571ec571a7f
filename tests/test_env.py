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
