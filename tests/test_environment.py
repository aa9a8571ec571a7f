"""One pinned environment: requirements.in is the truth; requirements.txt, environment.yml
and binder/ agree with it, and Binder installs it with pip, as CI does; and the notebooks'
preamble checks the kernel against it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from tools.lockfiles import (
    CPU_TORCH_INDEX, PYTHON_VERSION, read_pins, write_all,
)
from utils.env import check_environment, read_requirements, supported_python
from utils.errors import CourseError
from utils.workspace import repo_root

ROOT = repo_root()
BINDER = ROOT / "binder"


def _conda_pip_pins(path):
    import yaml

    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    pip_section = next(d["pip"] for d in spec["dependencies"] if isinstance(d, dict))
    python = next(d for d in spec["dependencies"] if isinstance(d, str) and d.startswith("python"))
    pins = dict(
        (canonicalize_name(line.split("==")[0]), line.split("==")[1]) for line in pip_section if "==" in line
    )
    return python, pins


def _binder_lines():
    lines = (BINDER / "requirements.txt").read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line.strip() and not line.startswith("#")]


def test_the_lock_pins_every_requirement_within_its_range():
    pins = read_pins(ROOT / "requirements.txt")
    for name, spec in read_requirements(ROOT / "requirements.in").items():
        assert name in pins, f"{name} is in requirements.in but not in the lock: run `make lock`"
        assert Version(pins[name]) in spec, f"the lock pins {name}=={pins[name]}, outside {spec}"
    assert "+" not in pins["torch"]  # no +cpu label: installable from PyPI too


def test_every_requirement_in_the_lock_is_pinned():
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    requirements = [l for l in lines if l.strip() and not l.lstrip().startswith(("#", "-"))]
    assert all("==" in l for l in requirements), [l for l in requirements if "==" not in l]


def test_conda_and_binder_files_agree_with_the_lock():
    pins = read_pins(ROOT / "requirements.txt")
    python, conda_pins = _conda_pip_pins(ROOT / "environment.yml")
    assert python == f"python={PYTHON_VERSION}"
    assert conda_pins == pins, "environment.yml is stale: run `make lock`"
    assert read_pins(BINDER / "requirements.txt") == pins, "binder/requirements.txt is stale: run `make lock`"


def test_generated_files_are_what_make_lock_writes(tmp_path):
    (tmp_path / "requirements.txt").write_text((ROOT / "requirements.txt").read_text())
    write_all(tmp_path)
    for name in ("environment.yml", "binder/requirements.txt", "binder/runtime.txt"):
        assert (tmp_path / name).read_text() == (ROOT / name).read_text(), name


def test_binder_builds_with_pip_on_the_course_s_python():
    # repo2docker takes an environment.yml (or a Pipfile) before requirements.txt, and would
    # then install through conda; runtime.txt holds one `python-X.Y` line and nothing else.
    assert sorted(p.name for p in BINDER.iterdir()) == ["postBuild", "requirements.txt", "runtime.txt"]
    assert (BINDER / "runtime.txt").read_text() == f"python-{PYTHON_VERSION}\n"
    assert f"{PYTHON_VERSION}.0" in supported_python()


def test_binder_installs_the_cpu_build_of_torch():
    # pip reads an option line of a requirements file for every line of it; Binder has no GPU.
    lines = _binder_lines()
    assert lines[0] == f"--extra-index-url {CPU_TORCH_INDEX}"
    assert all(line.count("==") == 1 for line in lines[1:])


def test_the_lock_pins_what_binder_s_base_shares_with_the_lab():
    # repo2docker's base has notebook 7, whose each release takes one JupyterLab minor
    # version, and ipywidgets (live progress bars): the lock pins them to fit its JupyterLab.
    pins = read_pins(ROOT / "requirements.txt")
    for name in ("notebook", "ipywidgets", "widgetsnbextension", "jupyterlab-widgets", "jupyterlab"):
        assert name in pins, name


def test_the_course_environment_has_no_broken_requirement():
    # The lock's versions agree with each other (notebook with JupyterLab, ipywidgets with its
    # front end ...): pip checks the metadata of what `make setup` installed from it.
    result = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_binder_post_build_installs_the_course_package():
    post_build = BINDER / "postBuild"
    text = post_build.read_text(encoding="utf-8")
    assert text.startswith("#!/usr/bin/env bash\n") and os.access(post_build, os.X_OK)
    mode = subprocess.run(["git", "ls-files", "-s", "binder/postBuild"], cwd=ROOT,
                          capture_output=True, text=True, check=False).stdout
    assert mode == "" or mode.startswith("100755"), "postBuild must be committed executable"
    assert "pip install --no-cache-dir --no-deps --no-build-isolation -e ." in text
    assert "jupyter_serverproxy_servers" in text  # and it checks the MLflow UI entry


# -- the notebooks' preamble check -----------------------------------------------------------
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
