"""The Binder check (tools/binder_check.py, `make binder-check`): how it reads repo2docker's
Dockerfile and base lock, and, in the full tier, what the pinned repo2docker really renders
for the course. `.ci/run` runs the whole check (the rebuilt layer, its lab and notebook 01)."""

import shutil
import sys
from pathlib import Path

import pytest

from tools import binder_check
from tools.binder_check import (
    EXPECTED_STEPS, BinderCheck, CondaPackage, base_lock_name, check_steps, course_steps,
    parse_dockerfile, read_conda_lock, version_differences,
)
from tools.lockfiles import PYTHON_VERSION, read_pins
from utils.errors import CourseError
from utils.workspace import repo_root

ROOT = repo_root()

# The shape of what repo2docker renders, cut down to the lines the check reads (its scripts
# live in the system's temporary folder, spelt @TMP here).
DOCKERFILE = r"""
FROM docker.io/library/buildpack-deps:24.04
ENV NB_ENVIRONMENT_FILE=@TMP/env/environment.lock
ENV MAMBA_ROOT_PREFIX=${CONDA_DIR}
COPY --chown=1000:1000 build_script_files/-2fx-2frepo2docker-2fbuildpacks-2fconda-2fenvironment-2epy-2d3-2e11-2dlinux-2d64-2elock-ff32d0 @TMP/env/environment.lock
RUN TIMEFORMAT='time: %3R' \
bash -c 'time @TMP/install-base-env.bash' && \
rm -rf @TMP/install-base-env.bash @TMP/env
RUN mkdir -p ${NPM_DIR} && \
chown -R ${NB_USER}:${NB_USER} ${NPM_DIR}
COPY --chown=1000:1000 src/binder/requirements.txt ${REPO_DIR}/binder/requirements.txt
USER ${NB_USER}
RUN ${KERNEL_PYTHON_PREFIX}/bin/pip install --no-cache-dir -r "binder/requirements.txt"
COPY --chown=1000:1000 src/ ${REPO_DIR}/
# Make sure that postBuild scripts are marked executable before executing them
RUN chmod +x binder/postBuild
RUN ./binder/postBuild
CMD ["jupyter", "notebook", "--ip", "0.0.0.0"]
""".replace("@TMP", "/" + "tmp")

CONDA_LOCK = """\
# platform: linux-64
@EXPLICIT
https://conda.anaconda.org/conda-forge/linux-64/python-3.11.14-hfe2f287_1_cpython.conda#e87c
https://conda.anaconda.org/conda-forge/linux-64/nodejs-20.19.5-hf7ee748_0.conda#2cbd
https://conda.anaconda.org/conda-forge/noarch/typing-extensions-4.15.0-h396c80c_0.conda#edd3
https://conda.anaconda.org/conda-forge/noarch/typing_extensions-4.15.0-pyhcf101f3_0.conda#0caa
https://conda.anaconda.org/conda-forge/linux-64/brotli-python-1.1.0-py311h1ddb823_4.conda#7138
https://conda.anaconda.org/conda-forge/noarch/jupyterhub-base-5.4.0-pyhc90fa1f_0.conda#5930
https://conda.anaconda.org/conda-forge/noarch/cached_property-1.5.2-pyha770c72_1.tar.bz2#576d
"""


def test_the_course_s_steps_are_read_from_the_dockerfile_in_order():
    instructions = parse_dockerfile(DOCKERFILE)
    steps = course_steps(instructions)
    assert steps == list(EXPECTED_STEPS)
    check_steps(steps)  # what the course expects
    assert base_lock_name(instructions) == "environment.py-3.11-linux-64.lock"


def test_a_conda_install_or_a_missing_step_fails_the_check():
    conda = DOCKERFILE.replace(
        'RUN ${KERNEL_PYTHON_PREFIX}/bin/pip install --no-cache-dir -r "binder/requirements.txt"',
        'RUN bash -c \'${MAMBA_EXE} env update -p ${NB_PYTHON_PREFIX} --file "binder/environment.yml"\'')
    with pytest.raises(CourseError, match="an environment.yml there"):
        check_steps(course_steps(parse_dockerfile(conda)))
    with pytest.raises(CourseError, match="not run the steps"):
        check_steps(course_steps(parse_dockerfile(DOCKERFILE.replace("RUN ./binder/postBuild\n", ""))))
    with pytest.raises(CourseError, match="base environment"):
        course_steps(parse_dockerfile(DOCKERFILE.replace("install-base-env.bash", "other.bash")))


def test_python_packages_of_the_base_lock_get_their_pypi_names():
    packages = read_conda_lock(CONDA_LOCK)
    python = {p.pypi_name: p.version for p in packages if p.is_python_package}
    assert python == {"typing_extensions": "4.15.0", "brotli": "1.1.0", "jupyterhub": "5.4.0",
                      "cached_property": "1.5.2"}
    # Python itself, node and meta-packages are no Python package to install from PyPI.
    assert [p.name for p in packages if not p.is_python_package] == [
        "python", "nodejs", "typing-extensions"]
    with pytest.raises(CourseError, match="Cannot read"):
        read_conda_lock("https://conda.anaconda.org/conda-forge/noarch/broken.conda\n")


def test_versions_must_match_the_lock_up_to_a_local_label():
    pins = {"torch": "2.13.0", "mlflow": "3.17.2", "ipywidgets": "8.1.9"}
    assert version_differences(pins, {"torch": "2.13.0+cpu", "mlflow": "3.17.2", "ipywidgets": "8.1.9"}) == []
    assert version_differences(pins, {"torch": "2.13.0", "mlflow": "3.17.1"}) == [
        "ipywidgets missing (the lock pins 8.1.9)", "mlflow 3.17.1 (the lock pins 3.17.2)"]


@pytest.fixture(scope="module")
def check():
    return BinderCheck(ROOT, Path(sys.executable), rebuild=False, keep_cpu_index=False)


@pytest.mark.full
def test_repo2docker_renders_the_course_s_steps_over_its_base(check):
    instructions = parse_dockerfile(check.render())
    check_steps(course_steps(instructions))
    name = base_lock_name(instructions)
    assert name == f"environment.py-{PYTHON_VERSION}-linux-64.lock"
    packages = read_conda_lock((check.repo2docker_package() / "buildpacks" / "conda" / name).read_text())
    assert binder_check.conda_python_version(packages).startswith(f"{PYTHON_VERSION}.")
    base = {p.pypi_name: p.version for p in packages if p.is_python_package}
    # What the lock must pin to fit (or leave alone): the lab's own packages are in the base.
    assert {"jupyterlab", "notebook", "ipywidgets", "jupyter_server", "jupyterhub"} <= set(base)
    assert all(isinstance(p, CondaPackage) for p in packages)


@pytest.mark.full
def test_an_environment_yml_in_binder_would_leave_the_course_s_steps(check, tmp_path):
    # The repository as Binder sees it, plus an environment.yml: repo2docker then installs
    # through conda, and the check says so instead of passing.
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "binder", repo / "binder")
    pins = read_pins(ROOT / "requirements.txt")
    (repo / "binder" / "environment.yml").write_text(
        "dependencies:\n  - python=3.11\n  - pip\n  - pip:\n    - mlflow==" + pins["mlflow"] + "\n")
    other = BinderCheck(repo, Path(sys.executable), rebuild=False, keep_cpu_index=False)
    other.build, other.tool = tmp_path / "build", check.tool  # the same repo2docker, built once
    other.build.mkdir()
    with pytest.raises(CourseError, match="an environment.yml there"):
        check_steps(course_steps(parse_dockerfile(other.render())))
