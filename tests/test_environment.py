"""One pinned environment: requirements.in is the truth; requirements.txt, environment.yml
and binder/ agree with it."""

from packaging.version import Version

from tools.lockfiles import PYTHON_VERSION, environment_yml, normalise, read_pins, write_all
from utils.env import read_requirements, supported_python
from utils.workspace import repo_root

ROOT = repo_root()


def _conda_pip_pins(path):
    import yaml

    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    pip_section = next(d["pip"] for d in spec["dependencies"] if isinstance(d, dict))
    python = next(d for d in spec["dependencies"] if isinstance(d, str) and d.startswith("python"))
    pins = dict(
        (normalise(line.split("==")[0]), line.split("==")[1]) for line in pip_section if "==" in line
    )
    return python, pins


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


def test_conda_files_agree_with_the_lock():
    pins = read_pins(ROOT / "requirements.txt")
    for path in (ROOT / "environment.yml", ROOT / "binder" / "environment.yml"):
        python, conda_pins = _conda_pip_pins(path)
        assert python == f"python={PYTHON_VERSION}", path
        assert f"{PYTHON_VERSION}.0" in supported_python()
        assert conda_pins == pins, f"{path.relative_to(ROOT)} is stale: run `make lock`"


def test_generated_files_are_what_make_lock_writes(tmp_path):
    (tmp_path / "requirements.txt").write_text((ROOT / "requirements.txt").read_text())
    write_all(tmp_path)
    for name in ("environment.yml", "binder/environment.yml"):
        assert (tmp_path / name).read_text() == (ROOT / name).read_text(), name


def test_environment_yml_lists_each_pin_once():
    text = environment_yml({"a": "1", "b-c": "2"}, "x")
    assert "    - a==1\n    - b-c==2\n" in text


def test_binder_installs_the_cpu_build_of_torch():
    # repo2docker hands the pip section to pip as a requirements file; the option line
    # comes first so that it applies to every pin below it.
    import yaml

    spec = yaml.safe_load((ROOT / "binder" / "environment.yml").read_text(encoding="utf-8"))
    pip_section = next(d["pip"] for d in spec["dependencies"] if isinstance(d, dict))
    assert pip_section[0] == "--extra-index-url https://download.pytorch.org/whl/cpu"
    assert "pip" in spec["dependencies"] and "conda-forge" in spec["channels"]


def test_binder_post_build_installs_the_course_package():
    import os
    import subprocess

    post_build = ROOT / "binder" / "postBuild"
    text = post_build.read_text(encoding="utf-8")
    assert text.startswith("#!/usr/bin/env bash\n") and os.access(post_build, os.X_OK)
    mode = subprocess.run(["git", "ls-files", "-s", "binder/postBuild"], cwd=ROOT,
                          capture_output=True, text=True, check=False).stdout
    assert mode == "" or mode.startswith("100755"), "postBuild must be committed executable"
    assert "pip install --no-cache-dir --no-deps --no-build-isolation -e ." in text
    assert "jupyter_serverproxy_servers" in text  # and it checks the MLflow UI entry
