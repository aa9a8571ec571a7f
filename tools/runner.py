"""Run one notebook headless with papermill: the one way the course's tools execute a notebook.

:func:`execute` runs a notebook in a new Jupyter kernel with the environment variables and
the working folder it is given (the course workspace is chosen through ``COURSE_WORKSPACE``
in ``env``) and writes the executed copy. The batch runner (``tools.batch``), the tests and
the benchmarks all call it; nbval, the other way the course's notebooks run, is the test
that each of them runs cell by cell.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from utils.training import HEADLESS_ENV
from utils.workspace import PROCESS_VARIABLES, WORKSPACE_ENV


def course_env(workspace: Path | str, base: Mapping[str, str] | None = None, **extra: str) -> dict[str, str]:
    """The environment of a kernel that records into ``workspace``: this process's
    environment (or ``base``) with ``COURSE_WORKSPACE`` set and none of the variables that
    ``utils.use_workspace()`` leaves in a process, which would point it at another store."""
    env = {key: value for key, value in (os.environ if base is None else base).items()
           if key not in PROCESS_VARIABLES}
    return {**env, WORKSPACE_ENV: str(workspace), **extra}


def kernel_manager_class(env: Mapping[str, str], cwd: Path, kernel_log: Path | None = None,
                         on_start: Callable[[int | None], None] | None = None, preexec_fn=None):
    """A jupyter_client kernel manager that starts its kernel with ``env`` in ``cwd``, sends
    the kernel's own messages to ``kernel_log`` if given, and reports the kernel's pid.
    ``preexec_fn`` runs in the kernel's process before the kernel starts."""
    from jupyter_client import AsyncKernelManager

    class CourseKernelManager(AsyncKernelManager):
        async def start_kernel(self, **kwargs):
            # Headless: no live progress widgets, which nobody would see (utils.training).
            kwargs.setdefault("env", {**env, HEADLESS_ENV: "1"})
            kwargs.setdefault("cwd", str(cwd))
            if preexec_fn is not None:
                kwargs.setdefault("preexec_fn", preexec_fn)
            if kernel_log is None:
                await super().start_kernel(**kwargs)
            else:  # the kernel's own messages (not the cells' output) go to a log file
                with open(kernel_log, "w", encoding="utf-8") as log:
                    await super().start_kernel(stdout=log, stderr=log, **kwargs)
            if on_start is not None:
                on_start(getattr(self.provisioner, "pid", None))

    return CourseKernelManager


def execute(notebook: Path | str, output: Path | str, parameters: Mapping[str, Any] | None = None, *,
            env: Mapping[str, str] | None = None, cwd: Path | str | None = None, kernel: str = "python3",
            kernel_log: Path | None = None, on_kernel_start: Callable[[int | None], None] | None = None,
            on_cell_start: Callable | None = None, km=None, log_output: bool = False,
            start_timeout: int = 120, preexec_fn=None, progress_bar: bool | dict = False,
            execution_timeout: int | None = None):
    """Execute ``notebook`` with papermill into ``output``; return the executed notebook.

    ``parameters`` go into the cell after the one tagged ``parameters``. The kernel runs
    with ``env`` (default: this process's environment) in ``cwd`` (default: the notebook's
    folder); this process's own working folder is left alone. ``km``, a kernel manager
    whose kernel is already running, is used instead of a new kernel and left running
    afterwards; ``preexec_fn`` runs in a new kernel's process before it starts.
    ``progress_bar`` and ``execution_timeout`` (seconds per cell) are papermill's. A failing
    cell raises papermill's ``PapermillExecutionError``, a cell over the time limit
    nbclient's ``CellTimeoutError``; the executed copy is written either way.
    """
    import nbformat
    import papermill

    from nbclient.exceptions import DeadKernelError

    notebook, output = Path(notebook), Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    cwd = Path(cwd) if cwd is not None else notebook.parent
    streams = {"stdout_file": sys.stdout, "stderr_file": sys.stderr} if log_output else {}
    launched: dict[str, Any] = {}

    def started(pid):
        launched["pid"] = pid
        if on_kernel_start is not None:
            on_kernel_start(pid)

    # Ctrl-C kills the kernel, which nbclient then finds dead and cleans up after: a
    # KeyboardInterrupt raised in the middle of nbclient's event loop may never reach us.
    def stop_the_kernel(*_):
        if not launched.get("pid"):
            raise KeyboardInterrupt
        launched["interrupted"] = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(launched["pid"], signal.SIGKILL)  # its own process group (jupyter_client)

    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, stop_the_kernel) if in_main_thread else None
    try:
        papermill.execute_notebook(
            str(notebook), str(output), parameters=dict(parameters or {}),
            kernel_name=kernel, progress_bar=progress_bar, start_timeout=start_timeout, log_output=log_output,
            execution_timeout=execution_timeout,
            kernel_manager_class=kernel_manager_class(os.environ if env is None else env, cwd,
                                                      kernel_log, started, preexec_fn),
            km=km, on_cell_start=on_cell_start, **streams,
        )
    except DeadKernelError:
        if launched.get("interrupted"):
            raise KeyboardInterrupt from None
        raise
    finally:
        if in_main_thread:
            signal.signal(signal.SIGINT, previous)
    return nbformat.read(output, as_version=4)
