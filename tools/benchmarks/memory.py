"""Does the course fit mybinder.org's memory? Runs it as Binder would and prints the peak.

    sudo .venv/bin/python tools/benchmarks/memory.py        # both cases below

mybinder.org gives a session at most 2 GB and guarantees 1 GB; past the limit the kernel is
killed. The benchmark starts a real JupyterLab on the course, opens the MLflow UI tile (so
its tracking server runs), and executes notebooks in kernels, all inside one Linux memory
cgroup with a hard limit, the way a Binder container holds them:

1. notebook 03 at its defaults, with the lab and the tile's server, in 1.5 GiB;
2. notebook 03, then notebook 04 while 03's kernel is still alive (a reader who moves on
   without shutting a kernel down), in 2 GiB.

For each case it prints the cgroup's peak memory, how often the limit was hit, the OOM
kills, and the peak resident memory of each kind of process (sampled every 0.2 s). Where no
cgroup can be made (not root, or no cgroup v1 memory controller), it says so and reports
the peak resident memory of the process tree instead: an upper bound, since pages that
processes share (the libraries of torch, say) count once per process there.

The benchmark process itself (the one reading the notebooks and talking to the kernels,
like a browser) stays outside the cgroup. Each case uses a new temporary workspace.
"""

from __future__ import annotations

import argparse
import asyncio
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
CGROUP_ROOT = Path("/sys/fs/cgroup/memory")
CASES = {
    "03": ("notebook 03 with the lab and the MLflow UI tile's server", ["03"], 1536),
    "03+04": ("notebook 03, then 04 with 03's kernel still alive", ["03", "04"], 2048),
}


class MemoryCgroup:
    """A cgroup v1 memory controller group with a hard limit; processes join it at start."""

    def __init__(self, name: str, limit_mib: int) -> None:
        self.path = CGROUP_ROOT / name
        self.path.mkdir()
        (self.path / "memory.limit_in_bytes").write_text(str(limit_mib * MIB))

    @staticmethod
    def unavailable() -> str | None:
        """Why no cgroup can be made here, or None."""
        if not (CGROUP_ROOT / "memory.limit_in_bytes").exists():
            return f"no cgroup v1 memory controller at {CGROUP_ROOT}"
        if not os.access(CGROUP_ROOT, os.W_OK):
            return f"{CGROUP_ROOT} is not writable (run as root)"
        return None

    def join(self) -> None:
        """Move the calling process into the group: a new child's ``preexec_fn``, so that
        everything the child then loads is charged to the group."""
        (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def read(self, name: str) -> str:
        return (self.path / name).read_text()

    @property
    def peak_mib(self) -> float:
        return int(self.read("memory.max_usage_in_bytes")) / MIB

    @property
    def limit_hits(self) -> int:
        return int(self.read("memory.failcnt"))

    @property
    def oom_kills(self) -> int:
        for line in self.read("memory.oom_control").splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1])
        return 0

    def remove(self) -> None:
        for _ in range(50):  # the group empties as its last processes exit
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.2)


def role(command: str) -> str:
    """What a process of the course is, from its command line."""
    if "ipykernel" in command:
        return "kernel"
    if "mlflow.utils._capture_modules" in command:
        return "requirements inference"
    if "uvicorn" in command:
        return "MLflow server"
    if "-m utils.tracking" in command:
        return "MLflow server, starting"
    if "jupyter-lab" in command or "jupyter lab" in command:
        return "JupyterLab"
    if "/mlflow " in command:
        return "mlflow command line (a notebook's ! cell)"
    if "train.py" in command:
        return "python train.py (notebook 04)"
    return "other"


@dataclass
class Sampler:
    """Samples the resident memory of a process tree every 0.2 s, by role."""

    roots: list[int]
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
            total, snapshot = 0.0, []
            for pid in list(self.roots):
                try:
                    root = psutil.Process(pid)
                    processes = [root, *root.children(recursive=True)]
                except psutil.NoSuchProcess:
                    continue
                for process in processes:
                    try:
                        rss = process.memory_info().rss / MIB
                        kind = role(" ".join(process.cmdline()))
                    except psutil.NoSuchProcess:
                        continue
                    total += rss
                    snapshot.append((kind, rss))
                    self.peaks[kind] = max(self.peaks.get(kind, 0.0), rss)
            if total > self.total_peak:
                self.total_peak, self.at_peak = total, sorted(snapshot, key=lambda item: -item[1])


def run_case(name: str, keep: bool) -> bool:
    """Run one case; print its figures; True when every notebook finished."""
    import requests
    from tools.lab import JupyterLabServer
    from tools.runner import course_env, execute, kernel_manager_class
    from utils.workspace import repo_root

    title, notebooks, limit_mib = CASES[name]
    root = repo_root()
    base = Path(tempfile.mkdtemp(prefix=f"bench-memory-{name.replace('+', '-')}-"))
    workspace = base / "workspace"
    env = course_env(workspace, MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true",
                     HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env.pop("MLFLOW_TRACKING_URI", None)
    why_not = MemoryCgroup.unavailable()
    group = None if why_not else MemoryCgroup(f"course-bench-{os.getpid()}-{name.replace('+', '-')}", limit_mib)
    join = group.join if group else None
    print(f"\n== {title} (limit {limit_mib} MiB)" + (f": no cgroup ({why_not})" if why_not else ""),
          flush=True)

    lab = JupyterLabServer(root_dir=root, env=env, preexec_fn=join)
    alive: list = []  # kernel managers of notebooks whose kernels stay alive
    finished = True
    started = time.monotonic()
    try:
        lab.start()
        sampler = Sampler([lab.process.pid]).start()
        # The reader opens the MLflow UI tile: the lab starts the workspace's tracking server.
        answer = requests.get(lab.url("mlflow/"), headers=lab.auth_header, timeout=180)
        answer.raise_for_status()
        for number, key in enumerate(notebooks):
            notebook = next((root / "notebooks").glob(f"{key}_*.ipynb"))
            output = base / "executed" / notebook.name
            last = number == len(notebooks) - 1
            km = None
            if not last:  # this kernel stays alive while the next notebook runs
                km = kernel_manager_class(env, notebook.parent, preexec_fn=join)(kernel_name="python3")
                asyncio.run(km.start_kernel())
                sampler.roots.append(km.provisioner.pid)
                alive.append(km)
            try:
                execute(notebook, output, env=env, km=km, preexec_fn=join,
                        on_kernel_start=lambda pid: sampler.roots.append(pid) if pid else None)
                print(f"{notebook.name}: finished ({time.monotonic() - started:.0f} s)", flush=True)
            except Exception as error:  # a killed kernel, or a failing cell
                finished = False
                print(f"{notebook.name}: FAILED: {type(error).__name__}: {str(error)[:300]}", flush=True)
                break
        sampler.stop()
    finally:
        for km in alive:
            try:
                asyncio.run(km.shutdown_kernel(now=True))
            except Exception:  # noqa: BLE001 - a kernel the OOM killer took is gone already
                pass
        lab.stop()
        if not keep:
            shutil.rmtree(base, ignore_errors=True)

    oom_kills = group.oom_kills if group else 0
    if group:
        print(f"peak memory of the cgroup: {group.peak_mib:.0f} MiB of {limit_mib} MiB; "
              f"limit hit {group.limit_hits} times; OOM kills: {oom_kills}")
        group.remove()
    else:
        print(f"peak resident memory of the process tree: {sampler.total_peak:.0f} MiB "
              f"(an upper bound; the goal is {limit_mib} MiB)")
    for kind, peak in sorted(sampler.peaks.items(), key=lambda item: -item[1]):
        print(f"  {kind:<42} peak {peak:6.0f} MiB (one process)")
    print(f"  at the busiest moment ({sampler.total_peak:.0f} MiB resident in all, shared pages "
          "counted in each process): " + ", ".join(f"{kind} {rss:.0f}" for kind, rss in sampler.at_peak))
    ok = finished and oom_kills == 0
    print(f"-> {'fits' if ok else 'DOES NOT FIT'}", flush=True)
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="*", metavar="CASE", help=f"which cases: {', '.join(CASES)} (default: all)")
    parser.add_argument("--keep", action="store_true", help="keep the workspaces and executed notebooks")
    args = parser.parse_args(argv)
    unknown = [case for case in args.cases if case not in CASES]
    if unknown:
        parser.error(f"no case {', '.join(unknown)}; the cases are {', '.join(CASES)}")
    results = [run_case(name, args.keep) for name in args.cases or list(CASES)]
    return 0 if all(results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
