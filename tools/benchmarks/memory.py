"""Does the course fit mybinder.org's session? Runs it as Binder would and prints the peaks.

    sudo .venv/bin/python tools/benchmarks/memory.py                  # the cases CI runs
    sudo .venv/bin/python tools/benchmarks/memory.py --cases 03,03+04   # others

mybinder.org gives a session one CPU and at most 2 GB of memory; past the limit the kernel
is killed. The benchmark starts a real JupyterLab on the course, opens the MLflow UI tile
(so its tracking server runs), and executes notebooks in kernels, all inside Linux cgroups
(v1) with hard limits, the way a Binder container holds them: a memory group and, where a
case asks for it, a CPU group with a CFS quota of one CPU (what Kubernetes sets for
Binder's limit; the processes still see every core of the machine, as they do on Binder).
The cases (``--cases``; default: ``course,05``):

- ``course``: every notebook in course order, at one CPU and 2 GiB, each kernel shut down
  after its notebook, as the README tells readers;
- ``05``: notebook 05 on its own, which serves a logged model (``mlflow models serve``, a
  child of its kernel), at one CPU and 2 GiB;
- ``03``: notebook 03 in 1.5 GiB, no CPU limit (the ``course`` case covers 03 at 2 GiB);
- ``03+04``: notebook 03, then 04 while 03's kernel is still alive (a reader who moves on
  without shutting a kernel down), in 2 GiB, no CPU limit.

For each notebook it prints its time, the CPU time the group used (at most the wall time
under one CPU), the group's peak working set while it ran (the lab, the tile's server and
the kernel together: usage less the inactive file cache, as Kubernetes counts a Binder
container; sampled every 0.2 s) and its peak usage with the file cache, how often the limit
was hit (Linux then drops cached files), the OOM kills, and the biggest processes at its
busiest moment (resident memory); then a Markdown table of the same to paste into the
README. It also counts the outputs that print ``IProgress not
found`` (tqdm's warning when ipywidgets is missing). Where no cgroup can be made (not root,
or no cgroup v1 controller), it says so and reports the peak resident memory of the process
tree instead: an upper bound, since pages that processes share (the libraries of torch, say)
count once per process there.

The benchmark process itself (the one reading the notebooks and talking to the kernels,
like a browser) stays outside the cgroups. Each case uses a new temporary workspace.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

MIB = 2**20
CGROUP_ROOT = Path("/sys/fs/cgroup")
CFS_PERIOD_US = 100_000
IPROGRESS_WARNING = "IProgress not found"


@dataclass(frozen=True)
class Case:
    title: str
    notebooks: tuple[str, ...] | None  # None: every notebook, in course order
    memory_mib: int
    cpus: float | None = None  # a CFS quota of this many CPUs; None: no CPU limit
    keep_kernels: bool = False  # each kernel stays alive while the later notebooks run


CASES = {
    "course": Case("the whole course as on Binder, each kernel shut down after its notebook",
                   None, 2048, cpus=1),
    "05": Case("notebook 05 (it serves a model with `mlflow models serve`) with the lab and the tile's server",
               ("05",), 2048, cpus=1),
    "03": Case("notebook 03 with the lab and the MLflow UI tile's server", ("03",), 1536),
    "03+04": Case("notebook 03, then 04 with 03's kernel still alive", ("03", "04"), 2048,
                  keep_kernels=True),
}
DEFAULT_CASES = ("course", "05")


class Cgroups:
    """A cgroup v1 memory group with a hard limit, and optionally a CPU group with a CFS
    quota; processes join both at start."""

    def __init__(self, name: str, memory_mib: int, cpus: float | None) -> None:
        self.memory = CGROUP_ROOT / "memory" / name
        self.memory.mkdir()
        (self.memory / "memory.limit_in_bytes").write_text(str(memory_mib * MIB))
        self.cpu = self.cpuacct = None
        if cpus is not None:
            self.cpu = CGROUP_ROOT / "cpu" / name
            self.cpu.mkdir()
            (self.cpu / "cpu.cfs_period_us").write_text(str(CFS_PERIOD_US))
            (self.cpu / "cpu.cfs_quota_us").write_text(str(int(cpus * CFS_PERIOD_US)))
        if (CGROUP_ROOT / "cpuacct" / "cpuacct.usage").exists():  # counts the CPU time used
            self.cpuacct = CGROUP_ROOT / "cpuacct" / name
            self.cpuacct.mkdir()

    @staticmethod
    def unavailable(cpus: float | None) -> str | None:
        """Why the groups cannot be made here, or None."""
        needed = [("memory", "memory.limit_in_bytes")] + ([("cpu", "cpu.cfs_quota_us")] if cpus else [])
        for controller, control in needed:
            if not (CGROUP_ROOT / controller / control).exists():
                return f"no cgroup v1 {controller} controller at {CGROUP_ROOT / controller}"
            if not os.access(CGROUP_ROOT / controller, os.W_OK):
                return f"{CGROUP_ROOT / controller} is not writable (run as root)"
        return None

    def join(self) -> None:
        """Move the calling process into the groups: a new child's ``preexec_fn``, so that
        everything the child then loads is charged to them."""
        for group in (self.memory, self.cpu, self.cpuacct):
            if group is not None:
                (group / "cgroup.procs").write_text(str(os.getpid()))

    def _read(self, name: str) -> str:
        return (self.memory / name).read_text()

    def reset_peak(self) -> None:
        (self.memory / "memory.max_usage_in_bytes").write_text("0")  # restarts from the usage now

    @property
    def peak_mib(self) -> float:
        return int(self._read("memory.max_usage_in_bytes")) / MIB

    @property
    def working_set_mib(self) -> float:
        """Usage less the inactive file cache, as Kubernetes (so Binder) counts a container:
        what is left when Linux has dropped the cached files it can."""
        stats = dict(line.split() for line in self._read("memory.stat").splitlines())
        return (int(self._read("memory.usage_in_bytes")) - int(stats["total_inactive_file"])) / MIB

    @property
    def limit_hits(self) -> int:
        return int(self._read("memory.failcnt"))

    @property
    def oom_kills(self) -> int:
        for line in self._read("memory.oom_control").splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1])
        return 0

    @property
    def cpu_seconds(self) -> float:
        """The CPU time the group's processes have used, in all."""
        if self.cpuacct is None:
            return 0.0
        return int((self.cpuacct / "cpuacct.usage").read_text()) / 1e9

    def remove(self) -> None:
        for group in (self.memory, self.cpu, self.cpuacct):
            for _ in range(50):  # a group empties as its last processes exit
                if group is None or not group.exists():
                    break
                try:
                    group.rmdir()
                except OSError:
                    time.sleep(0.2)


# The scripts the notebooks start, by the notebook that starts them.
SCRIPTS = {"train.py": "notebook 04's demo or 08's project", "search_worker.py": "notebook 07's second worker",
           "search.py": "notebook 08's project", "evaluate.py": "notebook 08's project"}


def role(command: str) -> str:
    """What a process of the course is, from its command line."""
    if "ipykernel" in command:
        return "kernel"
    if "_capture_modules" in command:  # mlflow.utils._capture_modules, run as a script
        return "requirements inference"
    # A served model (notebook 05): `mlflow models serve` and the scoring server it starts.
    if "mlflow.pyfunc.scoring_server" in command:
        return "model server (scoring server)"
    if "models serve" in command:
        return "model server (mlflow models serve)"
    if "uvicorn" in command:
        return "MLflow server"
    if "-m utils.tracking" in command:
        return "MLflow server, starting"
    if "jupyter-lab" in command or "jupyter lab" in command:
        return "JupyterLab"
    if "/mlflow " in command or "-m mlflow " in command:
        return "mlflow command line (a notebook's ! cell)"
    script = next((word.rsplit("/", 1)[-1] for word in command.split() if word.endswith(".py")), "")
    if script in SCRIPTS:
        return f"python {script} ({SCRIPTS[script]})"
    words = [word.rsplit("/", 1)[-1] for word in command.split()[:3]]
    return f"other: {' '.join(words)[:40]}"


@dataclass
class Sampler:
    """Samples the resident memory of a process tree every 0.2 s, by role."""

    roots: list[int]
    group: Cgroups | None = None  # whose working set to sample too
    working_set_peak: float = 0.0  # MiB
    peaks: dict[str, float] = field(default_factory=dict)  # role -> peak MiB of one process
    total_peak: float = 0.0  # MiB, the whole tree at once
    at_peak: list[tuple[str, float]] = field(default_factory=list)  # (role, MiB) at that moment
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Sampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        import psutil

        while not self._stop.wait(0.2):
            if self.group is not None:
                self.working_set_peak = max(self.working_set_peak, self.group.working_set_mib)
            total, snapshot = 0.0, []
            for pid in list(self.roots):
                try:
                    root = psutil.Process(pid)
                    processes = [root, *root.children(recursive=True)]
                except psutil.NoSuchProcess:
                    continue
                commands = {}
                for process in processes:
                    try:
                        rss = process.memory_info().rss / MIB
                        commands[process.pid] = command = " ".join(process.cmdline())
                        kind = role(command)
                        if commands.get(process.ppid()) == command:  # a fork (a data loader, say)
                            kind += " (forked)"
                    except psutil.NoSuchProcess:
                        continue
                    total += rss
                    snapshot.append((kind, rss))
                    self.peaks[kind] = max(self.peaks.get(kind, 0.0), rss)
            if total > self.total_peak:
                self.total_peak, self.at_peak = total, sorted(snapshot, key=lambda item: -item[1])


@dataclass
class Step:
    """One notebook of a case (or the lab's start), as measured."""

    name: str
    seconds: float
    status: str  # "finished" or "FAILED: ..."
    peak_mib: float | None  # the cgroup's, None without one
    limit_hits: int
    oom_kills: int
    cpu_seconds: float
    sampler: Sampler
    iprogress: int = 0  # outputs that print IProgress_WARNING

    def busiest(self, top: int = 4) -> str:
        return ", ".join(f"{kind} {rss:.0f}" for kind, rss in self.sampler.at_peak[:top])


def _measure(group: Cgroups | None, name: str, sampler: Sampler, started: float, before: tuple,
             status: str) -> Step:
    sampler.stop()
    hits, kills, cpu = before
    if group is None:
        return Step(name, time.monotonic() - started, status, None, 0, 0, 0.0, sampler)
    return Step(name, time.monotonic() - started, status, group.peak_mib, group.limit_hits - hits,
                group.oom_kills - kills, group.cpu_seconds - cpu, sampler)


def _counters(group: Cgroups | None) -> tuple:
    return (group.limit_hits, group.oom_kills, group.cpu_seconds) if group else (0, 0, 0.0)


def _iprogress_outputs(notebook: Path) -> int:
    if not notebook.exists():
        return 0
    cells = json.loads(notebook.read_text(encoding="utf-8")).get("cells", [])
    return sum(IPROGRESS_WARNING in json.dumps(output) for cell in cells for output in cell.get("outputs", []))


def run_case(name: str, keep: bool) -> bool:
    """Run one case; print its figures; True when every notebook finished without OOM kills."""
    import requests
    from tools.lab import JupyterLabServer
    from tools.runner import course_env, execute, kernel_manager_class
    from utils.workspace import repo_root

    case = CASES[name]
    root = repo_root()
    notebooks = sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if case.notebooks is not None:
        notebooks = [next((root / "notebooks").glob(f"{key}_*.ipynb")) for key in case.notebooks]
    slug = name.replace("+", "-")
    base = Path(tempfile.mkdtemp(prefix=f"bench-memory-{slug}-"))
    env = course_env(base / "workspace", MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true",
                     HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env.pop("MLFLOW_TRACKING_URI", None)
    why_not = Cgroups.unavailable(case.cpus)
    group = None if why_not else Cgroups(f"course-bench-{os.getpid()}-{slug}", case.memory_mib, case.cpus)
    join = group.join if group else None
    limits = f"{case.memory_mib} MiB" + (f", {case.cpus:g} CPU" if case.cpus else ", no CPU limit")
    print(f"\n== {name}: {case.title} ({limits})" + (f": no cgroup ({why_not})" if why_not else ""),
          flush=True)

    lab = JupyterLabServer(root_dir=root, env=env, preexec_fn=join)
    alive: list = []  # kernel managers of notebooks whose kernels stay alive
    steps: list[Step] = []
    try:
        started, before = time.monotonic(), _counters(group)
        sampler = Sampler([], group).start()
        lab.start()
        sampler.roots.append(lab.process.pid)
        # The reader opens the MLflow UI tile: the lab starts the workspace's tracking server.
        answer = requests.get(lab.page("mlflow/"), headers=lab.auth_header, timeout=300)
        answer.raise_for_status()
        steps.append(_measure(group, "JupyterLab and the MLflow UI tile", sampler, started, before, "started"))
        print(f"JupyterLab and the MLflow UI tile: started ({steps[-1].seconds:.0f} s)", flush=True)
        for number, notebook in enumerate(notebooks):
            output = base / "executed" / notebook.name
            if group:
                group.reset_peak()
            started, before = time.monotonic(), _counters(group)
            sampler = Sampler([lab.process.pid, *(km.provisioner.pid for km in alive)], group).start()
            km = None
            if case.keep_kernels and number < len(notebooks) - 1:
                km = kernel_manager_class(env, notebook.parent, preexec_fn=join)(kernel_name="python3")
                asyncio.run(km.start_kernel())
                sampler.roots.append(km.provisioner.pid)
                alive.append(km)
            status = "finished"
            try:
                # Without `km`, papermill shuts the kernel down after the notebook.
                execute(notebook, output, env=env, km=km, preexec_fn=join,
                        on_kernel_start=lambda pid: sampler.roots.append(pid) if pid else None)
            except Exception as error:  # a killed kernel, or a failing cell
                status = f"FAILED: {type(error).__name__}: {str(error)[:300]}"
            steps.append(_measure(group, notebook.name, sampler, started, before, status))
            steps[-1].iprogress = _iprogress_outputs(output)
            print(f"{notebook.name}: {status} ({steps[-1].seconds:.0f} s)", flush=True)
            if status != "finished":
                break
    finally:
        for km in alive:
            try:
                asyncio.run(km.shutdown_kernel(now=True))
            except Exception:  # noqa: BLE001 - a kernel the OOM killer took is gone already
                pass
        lab.stop()
        if not keep:
            shutil.rmtree(base, ignore_errors=True)
        if group:
            group.remove()

    _report(name, case, steps, group is not None)
    finished = len(steps) == len(notebooks) + 1 and all(s.status == "finished" for s in steps[1:])
    ok = finished and sum(s.oom_kills for s in steps) == 0
    print(f"-> {'fits' if ok else 'DOES NOT FIT'}", flush=True)
    return ok


def _report(name: str, case: Case, steps: list[Step], cgroup: bool) -> None:
    peaks: dict[str, float] = {}
    for step in steps:
        for kind, peak in step.sampler.peaks.items():
            peaks[kind] = max(peaks.get(kind, 0.0), peak)
    print("peak resident memory of one process, by kind:")
    small = [kind for kind, peak in peaks.items() if peak < 20]  # git, lscpu, shells ...
    for kind, peak in sorted(peaks.items(), key=lambda item: -item[1]):
        if kind not in small:
            print(f"  {kind:<42} {peak:6.0f} MiB")
    if small:
        print(f"  and {len(small)} more kinds, each below 20 MiB")
    iprogress = [s.name for s in steps if s.iprogress]
    print(f"'{IPROGRESS_WARNING}' printed by: {', '.join(iprogress) or 'no notebook'}")
    limits = f"{case.memory_mib / 1024:g} GiB" + (f", {case.cpus:g} CPU" if case.cpus else "")
    print(f"\nFor the README (case {name}, {limits}):\n")
    if cgroup:
        print("| notebook | time | CPU time | peak working set | peak with the file cache | "
              "limit hits | OOM kills | biggest processes at the busiest moment (MiB resident) |")
        print("|---|---|---|---|---|---|---|---|")
    else:
        print("| notebook | time | peak resident memory of the tree (an upper bound) | "
              "biggest processes at the busiest moment (MiB resident) |")
        print("|---|---|---|---|")
    for step in steps:
        status = "" if step.status in ("finished", "started") else f" ({step.status[:60]})"
        first = f"| {step.name.removesuffix('.ipynb')}{status} | {_duration(step.seconds)} |"
        if cgroup:
            print(f"{first} {_duration(step.cpu_seconds)} | {step.sampler.working_set_peak:.0f} MiB | "
                  f"{step.peak_mib:.0f} MiB | {step.limit_hits} | {step.oom_kills} | {step.busiest()} |")
        else:
            print(f"{first} {step.sampler.total_peak:.0f} MiB | {step.busiest()} |")
    if cgroup:
        print("\n(working set: the cgroup's usage less its inactive file cache, as Kubernetes counts "
              "a container; Linux drops that cache at the limit, which the limit hits count.)")
    total = sum(step.seconds for step in steps)
    print(f"\n{len(steps) - 1} notebook(s) in {_duration(total)} (with the lab's start); "
          f"OOM kills: {sum(s.oom_kills for s in steps)}; the machine's load average at the end: "
          f"{os.getloadavg()[1]:.1f} over {os.cpu_count()} cores (other work slows the times)", flush=True)


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(DEFAULT_CASES),
                        help=f"comma-separated, from {', '.join(CASES)} (default: %(default)s)")
    parser.add_argument("--keep", action="store_true", help="keep the workspaces and executed notebooks")
    args = parser.parse_args(argv)
    chosen = [case.strip() for case in args.cases.split(",") if case.strip()]
    unknown = [case for case in chosen if case not in CASES]
    if unknown or not chosen:
        parser.error(f"no case {', '.join(unknown) or '(none given)'}; the cases are {', '.join(CASES)}")
    results = [run_case(name, args.keep) for name in chosen]
    return 0 if all(results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
