"""Rebuild the Python layer of the course's Binder image without Docker, and check it.

    make binder-check          # .venv/bin/python -m tools.binder_check [--rebuild]

mybinder.org builds the course's image with repo2docker. There is no Docker engine here,
so this does what can be done without one:

1. installs the pinned ``jupyter-repo2docker`` into a tool venv (``build/binder/repo2docker``);
2. renders the image's Dockerfile (``repo2docker --no-build``) and checks that, after
   repo2docker's base environment, it runs the course's steps and no others: the pip install
   of ``binder/requirements.txt``, then ``binder/postBuild``;
3. reads the conda lock of the base environment for the Python version repo2docker picked,
   and makes a venv (``build/binder/layer``) holding its Python packages at their versions,
   by their PyPI names; conda packages that are no Python package (libraries, node, Python
   itself, meta-packages) are left out, and named;
4. runs the course's steps in that venv, in the Dockerfile's order, as the Dockerfile
   words them (two changes, printed: pip's cache is used, and the line of PyTorch's CPU
   index may be left out, see ``--keep-cpu-index``);
5. checks the result: ``pip check``; every pin of the lock installed at its version, as in
   the course's ``.venv``; every Jupyter server extension loads, every JupyterLab extension
   fits this JupyterLab, JupyterHub's single-user extension (how mybinder.org starts the
   lab) imports; JupyterLab starts from the venv and serves the MLflow UI tile at
   ``/mlflow/``; notebook 01 executes in the venv's kernel (while the tile's server runs, as
   on Binder) and prints no ``IProgress not found``.

It prints the venv's size and the install time. It simulates the pip layer only: the
image's Python build and conda's system libraries (openssl, libstdc++, zeromq, node ...)
are not the ones used here. A venv whose inputs did not change since it was built is
reused (``--rebuild`` installs it anew); everything in step 5 runs every time.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name

from tools.lockfiles import CPU_TORCH_INDEX, read_pins
from utils.errors import CourseError
from utils.workspace import repo_root

#: The repo2docker release the check renders with (mybinder.org runs a recent one).
REPO2DOCKER_VERSION = "2026.4.0"
BUILD_DIR = Path("build") / "binder"
#: Conda-forge packages whose PyPI distribution has another name.
CONDA_TO_PYPI = {
    "brotli-python": "brotli",
    "jupyterhub-base": "jupyterhub",
    "nbconvert-core": "nbconvert",
    "python-fastjsonschema": "fastjsonschema",
}
#: The Dockerfile's steps that come from binder/, in their order (``{prefix}``: where pip is).
EXPECTED_STEPS = (
    '${KERNEL_PYTHON_PREFIX}/bin/pip install --no-cache-dir -r "binder/requirements.txt"',
    "chmod +x binder/postBuild",
    "./binder/postBuild",
)
CPU_INDEX_LINE = f"--extra-index-url {CPU_TORCH_INDEX}"
IPROGRESS_WARNING = "IProgress not found"
#: Seconds for the lab, the tile and notebook 01 in the layer (about one minute here).
IN_LAYER_TIMEOUT = 900
_PIP_NOISE = "is ignored: it is neither"
_VERDICT_SCOPE = (
    "This simulates the image's pip layer (repo2docker's base packages from PyPI, then the "
    "course's steps) in a venv; it does not build the image, so conda's system libraries "
    "(openssl, libstdc++, zeromq, node ...) and its Python build are not checked."
)


# -- the Dockerfile ---------------------------------------------------------------------
@dataclass(frozen=True)
class Instruction:
    op: str  # RUN, COPY, ENV ...
    args: str  # the rest, continuation lines joined


def parse_dockerfile(text: str) -> list[Instruction]:
    """The instructions of a Dockerfile, each with its continuation lines joined."""
    instructions, pending = [], ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1].strip() + " "
            continue
        whole = (pending + line.strip()).strip()
        pending = ""
        op, _, args = whole.partition(" ")
        instructions.append(Instruction(op.upper(), args.strip()))
    return instructions


def dockerfile_env(instructions: list[Instruction]) -> dict[str, str]:
    """The ``ENV NAME=value`` settings of a Dockerfile (later ones win)."""
    env = {}
    for instruction in instructions:
        if instruction.op == "ENV":
            for name, value in re.findall(r"(\w+)=(\S+)", instruction.args):
                env[name] = value
    return env


def course_steps(instructions: list[Instruction]) -> list[str]:
    """The RUN steps after repo2docker's base environment that install or run anything of
    the repository (pip, conda, binder/): the ones the check reproduces."""
    base = [i for i, ins in enumerate(instructions)
            if ins.op == "RUN" and "install-base-env.bash" in ins.args]
    if not base:
        raise CourseError("The Dockerfile has no step that installs repo2docker's base "
                          "environment (install-base-env.bash): repo2docker changed its layout.")
    return [ins.args for ins in instructions[base[0] + 1:]
            if ins.op == "RUN" and re.search(r"\bpip\b|mamba|conda|binder/", ins.args)]


def check_steps(steps: list[str]) -> None:
    """The course's steps must be exactly :data:`EXPECTED_STEPS`, in that order."""
    if list(steps) != list(EXPECTED_STEPS):
        raise CourseError(
            "The Binder image would not run the steps the course expects after repo2docker's "
            f"base environment.\n  expected: {list(EXPECTED_STEPS)}\n  found:    {steps}\n"
            "binder/ should hold requirements.txt, runtime.txt and postBuild only (an "
            "environment.yml there makes repo2docker use conda instead); `make lock` writes them."
        )


def base_lock_name(instructions: list[Instruction]) -> str:
    """The file name of the base environment's lock that the Dockerfile copies in, e.g.
    ``environment.py-3.11-linux-64.lock``."""
    target = dockerfile_env(instructions).get("NB_ENVIRONMENT_FILE")
    for instruction in instructions:
        words = instruction.args.split()
        if instruction.op == "COPY" and target and words[-1] == target:
            # build_script_files/<the source path, '-'-escaped, lower-cased>-<6 hex of a hash>
            slug = words[-2].removeprefix("build_script_files/").rsplit("-", 1)[0]
            source = re.sub(r"-([0-9a-f]{2})", lambda m: chr(int(m.group(1), 16)), slug)
            name = source.rsplit("/", 1)[-1]
            if re.fullmatch(r"environment\.py-\d+\.\d+-linux-64\.lock", name):
                return name
    raise CourseError(f"The Dockerfile copies no base environment lock to {target}: "
                      "repo2docker changed its layout.")


# -- the base environment's conda lock ---------------------------------------------------
_CONDA_URL = re.compile(
    r"/(?:noarch|linux-64)/(?P<name>[^/]+)-(?P<version>[^-/]+)-(?P<build>[^-/]+)\.(?:conda|tar\.bz2)(?:#|$)")


@dataclass(frozen=True)
class CondaPackage:
    name: str
    version: str
    build: str

    @property
    def is_python_package(self) -> bool:
        # conda-forge builds Python packages as `pyh...` (noarch) or `py311h...`; libraries,
        # Python itself and meta-packages (cached-property, jupyterhub-singleuser ...) are `h...`.
        return self.build.startswith("py")

    @property
    def pypi_name(self) -> str:
        return CONDA_TO_PYPI.get(self.name, self.name)


def read_conda_lock(text: str) -> list[CondaPackage]:
    """The packages of an ``@EXPLICIT`` conda lock (one package URL a line)."""
    packages = []
    for line in text.splitlines():
        if line.startswith(("http://", "https://")):
            match = _CONDA_URL.search(line)
            if not match:
                raise CourseError(f"Cannot read this line of repo2docker's base lock: {line}")
            packages.append(CondaPackage(match["name"], match["version"], match["build"]))
    return packages


def conda_python_version(packages: list[CondaPackage]) -> str:
    return next(p.version for p in packages if p.name == "python")


# -- versions ----------------------------------------------------------------------------
def installed_versions(python: Path) -> dict[str, str]:
    """``{normalised name: version}`` of what the interpreter ``python`` has installed."""
    script = ("import json, importlib.metadata as m; print(json.dumps("
              "{d.metadata['Name']: d.version for d in m.distributions()}))")
    out = subprocess.run([str(python), "-c", script], capture_output=True, text=True, check=True)
    return {canonicalize_name(name): version for name, version in json.loads(out.stdout).items()}


def version_differences(pins: dict[str, str], installed: dict[str, str]) -> list[str]:
    """Each pin of the lock that ``installed`` lacks or holds at another version. A local
    label counts as the same version (the CPU build ``torch 2.13.0+cpu`` is ``torch==2.13.0``)."""
    problems = []
    for name, version in sorted(pins.items()):
        have = installed.get(name)
        if have is None:
            problems.append(f"{name} missing (the lock pins {version})")
        elif have.split("+")[0] != version.split("+")[0]:
            problems.append(f"{name} {have} (the lock pins {version})")
    return problems


def folder_size(path: Path) -> int:
    """Bytes of the files under ``path``, each file once."""
    seen, total = set(), 0
    for folder, _, files in os.walk(path):
        for name in files:
            stat = os.lstat(os.path.join(folder, name))
            if (stat.st_dev, stat.st_ino) not in seen:
                seen.add((stat.st_dev, stat.st_ino))
                total += stat.st_size
    return total


# -- running things ----------------------------------------------------------------------
def _run(command, *, log: Path | None = None, **kwargs) -> subprocess.CompletedProcess:
    """Run ``command``; on failure raise CourseError with the end of its output."""
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    output = "\n".join(line for line in (result.stdout + result.stderr).splitlines()
                       if _PIP_NOISE not in line)
    if log is not None:
        with open(log, "a", encoding="utf-8") as file:
            file.write(f"$ {command if isinstance(command, str) else ' '.join(map(str, command))}\n"
                       f"{output}\n")
    if result.returncode != 0:
        tail = "\n".join(output.splitlines()[-25:])
        raise CourseError(f"This failed (exit {result.returncode}): "
                          f"{command if isinstance(command, str) else ' '.join(map(str, command))}\n{tail}")
    return result


def _say(text: str) -> None:
    print(text, flush=True)


class BinderCheck:
    def __init__(self, root: Path, venv_python: Path, rebuild: bool, keep_cpu_index: bool) -> None:
        self.root = root
        self.build = root / BUILD_DIR
        self.tool = self.build / "repo2docker"
        self.layer = self.build / "layer"
        self.log = self.build / "install.log"
        self.venv_python = venv_python
        self.rebuild = rebuild
        self.keep_cpu_index = keep_cpu_index

    # 1. the tool
    def repo2docker(self) -> Path:
        """The pinned repo2docker in its own venv, installed when missing."""
        executable = self.tool / "bin" / "repo2docker"
        if executable.exists():
            found = subprocess.run([str(executable), "--version"], capture_output=True, text=True)
            if found.stdout.strip() == REPO2DOCKER_VERSION:
                return executable
        shutil.rmtree(self.tool, ignore_errors=True)
        self.build.mkdir(parents=True, exist_ok=True)
        _run([sys.executable, "-m", "venv", str(self.tool)])
        _run([str(self.tool / "bin" / "python"), "-m", "pip", "install", "--quiet",
              f"jupyter-repo2docker=={REPO2DOCKER_VERSION}"])
        return executable

    def repo2docker_package(self) -> Path:
        out = _run([str(self.tool / "bin" / "python"), "-c",
                    "import os, repo2docker; print(os.path.dirname(repo2docker.__file__))"])
        return Path(out.stdout.strip())

    # 2. the Dockerfile
    def render(self) -> str:
        repo2docker = self.repo2docker()
        result = _run([str(repo2docker), "--no-build", "--user-id", "1000", "--user-name", "jovyan",
                       "."], cwd=self.root)
        (self.build / "Dockerfile").write_text(result.stdout, encoding="utf-8")
        return result.stdout

    # 3.-4. the layer
    def base_requirements(self, packages: list[CondaPackage]) -> tuple[list[str], list[str]]:
        """``name==version`` of the base's Python packages (pip first), and the names of
        the packages left out."""
        python = [p for p in packages if p.is_python_package]
        python.sort(key=lambda p: p.pypi_name != "pip")
        return ([f"{p.pypi_name}=={p.version}" for p in python],
                [p.name for p in packages if not p.is_python_package])

    def course_requirements(self) -> tuple[Path, str]:
        """Binder's requirements file as pip gets it here, and what was changed."""
        source = self.root / "binder" / "requirements.txt"
        if self.keep_cpu_index:
            return source, "binder/requirements.txt as it is, PyTorch's CPU index included"
        lines = source.read_text(encoding="utf-8").splitlines()
        if CPU_INDEX_LINE not in lines:
            raise CourseError(f"binder/requirements.txt lacks `{CPU_INDEX_LINE}`: run `make lock`.")
        copy = self.build / "requirements.txt"
        copy.write_text("\n".join(line for line in lines if line != CPU_INDEX_LINE) + "\n",
                        encoding="utf-8")
        return copy, (f"binder/requirements.txt without `{CPU_INDEX_LINE}` (that host is not "
                      "reached from here): torch's CPU build comes from pip's own configuration")

    def ensure_cpu_torch_available(self, python: Path, pins: dict[str, str]) -> None:
        """Without PyTorch's index, pip must find the CPU build some other way (its
        find-links, say), or the check would install PyPI's CUDA build of several GB."""
        wanted = f"torch=={pins['torch'].split('+')[0]}+cpu"
        try:
            _run([str(python), "-m", "pip", "install", "--dry-run", "--no-deps", "--quiet", wanted])
        except CourseError as error:
            raise CourseError(
                f"pip finds no {wanted} through its configuration. Give it the wheel's folder "
                "(PIP_FIND_LINKS=/folder make binder-check), or run `.venv/bin/python -m "
                "tools.binder_check --keep-cpu-index` where PyTorch's index is reachable."
                f"\n{error}") from None

    def build_layer(self, base: list[str], steps: list[str], pins: dict[str, str],
                    python_minor: str) -> dict:
        """Make the venv unless an identical one exists; return what it took."""
        requirements, change = self.course_requirements()
        inputs = json.dumps({
            "base": base, "steps": steps, "python": shutil.which(f"python{python_minor}"),
            "requirements": requirements.read_text(encoding="utf-8"),
            "postBuild": (self.root / "binder" / "postBuild").read_text(encoding="utf-8"),
            "pyproject": (self.root / "pyproject.toml").read_text(encoding="utf-8"),
        }, sort_keys=True)
        digest = hashlib.sha256(inputs.encode()).hexdigest()
        stamp = self.layer / ".binder-check.json"
        _say(f"   the course's requirements: {change}")
        _say("   without --no-cache-dir: pip may use its cache here")
        if not self.rebuild and stamp.exists():
            built = json.loads(stamp.read_text(encoding="utf-8"))
            if built.get("inputs") == digest:
                _say(f"   reused {BUILD_DIR / 'layer'}: nothing it was built from changed "
                     "(--rebuild installs it anew)")
                return {**built, "reused": True}

        interpreter = shutil.which(f"python{python_minor}")
        if interpreter is None:
            raise CourseError(f"Binder's image runs Python {python_minor}, and no "
                              f"python{python_minor} is on this machine's PATH: install it.")
        shutil.rmtree(self.layer, ignore_errors=True)
        self.log.write_text("", encoding="utf-8")
        python = self.layer / "bin" / "python"
        started = time.monotonic()
        _run([interpreter, "-m", "venv", str(self.layer)], log=self.log)
        base_file = self.build / "base-requirements.txt"
        base_file.write_text("\n".join(base) + "\n", encoding="utf-8")
        # conda resolved these together; pip installs them as they are (no dependencies).
        _run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", base[0]], log=self.log)
        _run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "-r", str(base_file)],
             log=self.log)
        base_seconds = time.monotonic() - started
        _say(f"   base environment installed: {len(base)} packages, {base_seconds:.0f} s")
        base_check = subprocess.run([str(python), "-m", "pip", "check"], capture_output=True, text=True)
        _say(f"   pip check of the base alone: {(base_check.stdout or base_check.stderr).strip()}")

        if not self.keep_cpu_index:
            self.ensure_cpu_torch_available(python, pins)
        env = {**os.environ, "NB_PYTHON_PREFIX": str(self.layer),
               "KERNEL_PYTHON_PREFIX": str(self.layer), "REPO_DIR": str(self.root),
               "PATH": f"{self.layer / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
        env.pop("VIRTUAL_ENV", None)
        step_seconds = []
        for step in steps:
            command = step
            if "binder/requirements.txt" in step:
                command = command.replace(" --no-cache-dir", "").replace(
                    '"binder/requirements.txt"', f'"{requirements}"')
            _say(f"   RUN {step}")
            step_started = time.monotonic()
            _run(["bash", "-c", command], log=self.log, cwd=self.root, env=env)
            step_seconds.append(round(time.monotonic() - step_started, 1))
            _say(f"     {step_seconds[-1]:.0f} s")
        built = {"inputs": digest, "base_seconds": round(base_seconds, 1),
                 "step_seconds": step_seconds, "seconds": round(time.monotonic() - started, 1)}
        stamp.write_text(json.dumps(built), encoding="utf-8")
        return {**built, "reused": False}

    # 5. the checks
    def pip_check(self) -> str:
        result = subprocess.run([str(self.layer / "bin" / "python"), "-m", "pip", "check"],
                                capture_output=True, text=True)
        text = (result.stdout + result.stderr).strip()
        if result.returncode != 0:
            raise CourseError(f"pip check of the Binder layer found broken requirements:\n{text}")
        return text

    def server_extensions(self) -> list[str]:
        """``name version`` of each enabled Jupyter server extension; each must load."""
        result = subprocess.run([str(self.layer / "bin" / "jupyter"), "server", "extension", "list"],
                                capture_output=True, text=True,
                                env={**os.environ, "JUPYTER_CONFIG_DIR": str(self.build / "jupyter-config")})
        text = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout + result.stderr)  # its colours
        loaded = re.findall(r"^\s+(\S+) ?(\S*) OK$", text, flags=re.M)
        failed = [line.strip() for line in text.splitlines() if re.search(r"\bX\b|✘|[Ff]ail", line)]
        if result.returncode != 0 or failed or not loaded:
            raise CourseError("A Jupyter server extension of the Binder layer does not load:\n" + text)
        return [f"{name} {version}".strip() for name, version in loaded]

    def lab_extensions(self) -> list[str]:
        """``name version`` of each JupyterLab extension; each must fit this JupyterLab."""
        result = subprocess.run([str(self.layer / "bin" / "jupyter"), "labextension", "list"],
                                capture_output=True, text=True,
                                env={**os.environ, "JUPYTER_CONFIG_DIR": str(self.build / "jupyter-config")})
        text = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout + result.stderr)
        found = re.findall(r"^\s+(\S+) v(\S+) (?:enabled|disabled) +(OK|X)", text, flags=re.M)
        if result.returncode != 0 or not found or any(state != "OK" for *_, state in found):
            raise CourseError("A JupyterLab extension of the Binder layer does not fit its "
                              "JupyterLab:\n" + text)
        return [f"{name} {version}" for name, version, _ in found]

    def hub_extension(self) -> str:
        """mybinder.org starts the lab as `jupyterhub-singleuser`: its extension must import."""
        result = _run([str(self.layer / "bin" / "python"), "-c",
                       "import jupyterhub, jupyterhub.singleuser.extension; print(jupyterhub.__version__)"])
        return result.stdout.strip()

    def run_in_layer(self) -> dict:
        """JupyterLab, the tile and notebook 01, run by the layer's own Python."""
        report = self.build / "in-layer.json"
        report.unlink(missing_ok=True)
        env = {key: value for key, value in os.environ.items()
               if key not in ("VIRTUAL_ENV", "PYTHONPATH", "MLFLOW_TRACKING_URI")}
        env["PATH"] = f"{self.layer / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        command = [str(self.layer / "bin" / "python"), "-m", "tools.binder_check", "--in-layer", str(report)]
        try:
            result = subprocess.run(command, cwd=self.root, env=env, text=True, capture_output=True,
                                    timeout=IN_LAYER_TIMEOUT)
        except subprocess.TimeoutExpired as error:
            raise CourseError(f"JupyterLab and notebook 01 in the Binder layer took over "
                              f"{IN_LAYER_TIMEOUT} s; the end of their output:\n"
                              + str(error.stdout or "")[-3000:]) from None
        if result.returncode != 0 or not report.exists():
            raise CourseError("JupyterLab or notebook 01 failed in the Binder layer:\n"
                              + "\n".join((result.stdout + result.stderr).splitlines()[-40:]))
        return json.loads(report.read_text(encoding="utf-8"))

    def main(self) -> int:
        started = time.monotonic()
        _say(f"== 1. jupyter-repo2docker {REPO2DOCKER_VERSION} in {BUILD_DIR / 'repo2docker'}")
        self.repo2docker()
        _say(f"== 2. the Dockerfile: repo2docker --no-build --user-id 1000 --user-name jovyan . "
             f"(written to {BUILD_DIR / 'Dockerfile'})")
        instructions = parse_dockerfile(self.render())
        steps = course_steps(instructions)
        check_steps(steps)
        _say(f"   FROM {next(i.args for i in instructions if i.op == 'FROM')}; after repo2docker's "
             "base environment it runs, in this order:")
        for step in steps:
            _say(f"     RUN {step}")
        lock_name = base_lock_name(instructions)
        packages = read_conda_lock((self.repo2docker_package() / "buildpacks" / "conda" / lock_name)
                                   .read_text(encoding="utf-8"))
        base, left_out = self.base_requirements(packages)
        python_minor = ".".join(conda_python_version(packages).split(".")[:2])
        _say(f"== 3. the base environment: {lock_name} (Python {conda_python_version(packages)})")
        _say(f"   {len(base)} Python packages, installed from PyPI at the lock's versions")
        _say(f"   left out, no Python package ({len(left_out)}): {', '.join(left_out)}")
        pins = read_pins(self.root / "requirements.txt")
        base_names = {canonicalize_name(line.split("==")[0]): line.split("==")[1] for line in base}
        touched = sorted(set(pins) & set(base_names))
        untouched = sorted(set(base_names) - set(pins))
        _say(f"   the lock pins {len(touched)} of them; it leaves {len(untouched)} as the base has "
             "them: " + ", ".join(f"{name} {base_names[name]}" for name in untouched))

        _say(f"== 4. the layer: a venv in {BUILD_DIR / 'layer'}, then the course's steps")
        built = self.build_layer(base, steps, pins, python_minor)
        here = subprocess.run([str(self.layer / "bin" / "python"), "-c",
                               "import platform; print(platform.python_version())"],
                              capture_output=True, text=True, check=True).stdout.strip()
        size = folder_size(self.layer)

        _say("== 5. the checks")
        _say(f"   pip check: {self.pip_check()}")
        layer_versions = installed_versions(self.layer / "bin" / "python")
        venv_versions = installed_versions(self.venv_python)
        problems = [f"Binder layer: {p}" for p in version_differences(pins, layer_versions)]
        problems += [f"{self.venv_python.parent.parent.name}: {p}"
                     for p in version_differences(pins, venv_versions)]
        if problems:
            raise CourseError("The Binder layer and the course's environment do not hold the "
                              "lock's versions (run `make setup`, or `make lock`):\n  "
                              + "\n  ".join(problems))
        _say(f"   the lock's {len(pins)} pins: the same versions in the Binder layer and in "
             f"{self.venv_python.parent.parent.name} (torch {layer_versions['torch']} in the layer)")
        _say(f"   server extensions, each loads: {', '.join(self.server_extensions())}")
        _say(f"   JupyterLab extensions, each fits: {', '.join(self.lab_extensions())}")
        _say(f"   JupyterHub {self.hub_extension()}: its single-user extension (Binder's start) imports")
        in_layer = self.run_in_layer()
        _say(f"   JupyterLab {in_layer['jupyterlab']} started from the layer; the launcher lists "
             f"'{in_layer['tile']}'; /mlflow/ serves the MLflow UI ({in_layer['mlflow_seconds']:.0f} s "
             "to the first page)")
        _say(f"   notebook 01 executed in the layer's kernel ({in_layer['kernel']}) in "
             f"{in_layer['notebook_seconds']:.0f} s; '{IPROGRESS_WARNING}' printed: no")

        torch_from = ("PyTorch's CPU index" if self.keep_cpu_index
                      else "pip's configuration, not PyTorch's index")
        install = ("reused, built earlier in " if built["reused"] else "") + (
            f"{built['seconds']:.0f} s (base {built['base_seconds']:.0f} s, course's steps "
            + " + ".join(f"{s:.0f} s" for s in built["step_seconds"]) + ")")
        _say("")
        _say(f"Binder layer: {size / 2**30:.2f} GiB in {BUILD_DIR / 'layer'}; install {install}; "
             f"Python {here} here, {conda_python_version(packages)} in the image; torch's CPU "
             f"build from {torch_from}; check took {time.monotonic() - started:.0f} s")
        _say(f"PASS: with repo2docker {REPO2DOCKER_VERSION}, the Binder layer installs, pip check is "
             "clean, it holds the lock's versions, JupyterLab serves the MLflow UI tile and notebook "
             "01 runs.")
        _say(f"      {_VERDICT_SCOPE}")
        return 0


def in_layer(report: Path) -> None:
    """Run by the layer's Python: a lab with the tile's server, notebook 01 beside it."""
    import psutil
    import requests
    from jupyterlab import __version__ as jupyterlab_version

    from tools.lab import JupyterLabServer
    from tools.runner import course_env, execute

    root = repo_root()
    layer = Path(sys.prefix)
    with tempfile.TemporaryDirectory(prefix="binder-check-") as tmp:
        private = Path(tmp)
        # No kernels or settings of this machine's user: the layer's own, as in the image.
        env = course_env(private / "workspace", JUPYTER_DATA_DIR=str(private / "data"),
                         MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true",
                         HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        env.pop("JUPYTER_PATH", None)
        os.environ.update(env)
        lab = JupyterLabServer(root_dir=root, env=env)
        lab.start()
        try:
            info = requests.get(lab.page("server-proxy/servers-info"), headers=lab.auth_header, timeout=30)
            info.raise_for_status()
            tiles = [s["launcher_entry"]["title"] for s in info.json()["server_processes"]
                     if s["name"] == "mlflow" and s["launcher_entry"]["enabled"]]
            if not tiles:
                raise CourseError(f"The lab lists no MLflow UI tile: {info.text[:500]}")
            started = time.monotonic()
            page = requests.get(lab.page("mlflow/"), headers=lab.auth_header, timeout=180)
            if page.status_code != 200 or "<title>MLflow</title>" not in page.text:
                raise CourseError(f"/mlflow/ answered {page.status_code}: {page.text[:300]}\n"
                                  + lab.log_tail())
            mlflow_seconds = time.monotonic() - started

            kernels = []
            notebook = root / "notebooks" / "01_local_setup.ipynb"
            started = time.monotonic()
            executed = execute(notebook, private / "executed" / notebook.name, {"port": 0}, env=env,
                               on_kernel_start=lambda pid: kernels.append(psutil.Process(pid).cmdline()))
            notebook_seconds = time.monotonic() - started
            if not kernels or not kernels[0][0].startswith(str(layer)):
                raise CourseError(f"Notebook 01 ran in a kernel of another environment: {kernels}")
            texts = json.dumps([cell.get("outputs", []) for cell in executed.cells])
            if IPROGRESS_WARNING in texts:
                raise CourseError(f"Notebook 01 printed '{IPROGRESS_WARNING}' in the Binder layer.")
            if requests.get(lab.page("mlflow/"), headers=lab.auth_header, timeout=60).status_code != 200:
                raise CourseError("The tile's server stopped answering while notebook 01 ran.")
        finally:
            lab.stop()
        left = lab.running_commands()
        if left:
            raise CourseError(f"Processes outlived the lab: {left}")
    report.write_text(json.dumps({
        "jupyterlab": jupyterlab_version, "tile": tiles[0], "mlflow_seconds": mlflow_seconds,
        "notebook_seconds": notebook_seconds, "kernel": Path(kernels[0][0]).relative_to(root).as_posix(),
    }), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rebuild", action="store_true",
                        help="install the layer anew even if nothing it was built from changed")
    parser.add_argument("--keep-cpu-index", action="store_true",
                        help=f"keep `{CPU_INDEX_LINE}` as Binder has it (needs that host)")
    parser.add_argument("--venv", type=Path, default=Path(".venv"),
                        help="the course's environment to compare with (default: .venv)")
    parser.add_argument("--in-layer", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.in_layer:
        in_layer(args.in_layer)
        return 0
    root = repo_root()
    venv_python = (root / args.venv if not args.venv.is_absolute() else args.venv) / "bin" / "python"
    try:
        return BinderCheck(root, venv_python, args.rebuild, args.keep_cpu_index).main()
    except CourseError as error:
        _say(f"\nFAIL: {error}")
        _say(f"      {_VERDICT_SCOPE}")
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
