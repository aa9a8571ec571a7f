"""A real JupyterLab and a real browser, for the course's checks and its pictures.

:class:`JupyterLabServer` runs ``jupyter lab`` on loopback the way a reader opens the course;
:func:`open_chromium` drives Debian's headless Chromium with Selenium. The browser test
(``tests/test_browser.py``), the proxy test and ``tools/figures.py`` use them.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import requests

from utils.errors import CourseError
from utils.tracking import DEFAULT_HOST, end_process_group, file_tail, find_free_port


class JupyterLabServer:
    """A ``jupyter lab`` process on loopback, in its own process group.

    The course's checks and figure script use it to open the course the way a reader
    does: a token-protected lab without a browser of its own, whose settings, layouts
    and runtime files live in a private folder so that nothing a reader saved changes
    what it shows. :meth:`stop` ends the lab together with every process it started
    (kernels, and the MLflow server behind ``/mlflow/``).

    >>> with JupyterLabServer(root_dir=".") as lab:   # doctest: +SKIP
    ...     print(lab.url("lab/tree/notebooks/01_local_setup.ipynb"))
    """

    def __init__(
        self,
        root_dir: Path,
        port: int = 0,
        token: str | None = None,
        env: dict[str, str] | None = None,
        extra_args: Sequence[str] = (),
        startup_timeout: float = 90.0,
        preexec_fn=None,
    ) -> None:
        self.root_dir = Path(root_dir)
        #: Run in the lab's process before it starts (the memory benchmark puts it into a cgroup).
        self.preexec_fn = preexec_fn
        self.requested_port = port
        self.port = port
        self.token = token or secrets.token_hex(16)
        self.env = dict(env or {})
        self.extra_args = list(extra_args)
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen | None = None
        #: The lab's process group; kept after stop() to check that nothing outlived it.
        self.pgid: int | None = None
        self._private: tempfile.TemporaryDirectory | None = None
        self._marker: str | None = None
        self.log_path: Path | None = None

    def url(self, path: str = "", host: str = DEFAULT_HOST) -> str:
        """The address of ``path`` in the lab, as seen by a browser that calls it ``host``."""
        return f"http://{host}:{self.port}/{path.lstrip('/')}"

    @property
    def auth_header(self) -> dict[str, str]:
        """The header that logs a plain HTTP client into the lab."""
        return {"Authorization": f"token {self.token}"}

    def start(self) -> JupyterLabServer:
        """Start the lab and wait until its API answers; return ``self``."""
        if self.process is not None and self.process.poll() is None:
            return self
        jupyter = Path(sys.executable).with_name("jupyter")
        if not jupyter.exists():
            raise CourseError(
                f"JupyterLab is not installed next to {Path(sys.executable).name}. "
                "Run `make setup` in the course folder."
            )
        self.port = self.requested_port or find_free_port()
        self._private = tempfile.TemporaryDirectory(prefix="course-lab-")
        private = Path(self._private.name)
        self._marker = str(private)
        env = {
            **os.environ,
            "JUPYTER_CONFIG_DIR": str(private / "config"),
            "JUPYTER_RUNTIME_DIR": str(private / "runtime"),
            "JUPYTERLAB_SETTINGS_DIR": str(private / "settings"),
            "JUPYTERLAB_WORKSPACES_DIR": str(private / "workspaces"),
            **self.env,
        }
        command = [
            str(jupyter), "lab", "--no-browser",
            f"--ServerApp.ip={DEFAULT_HOST}",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--ServerApp.root_dir={self.root_dir}",
            f"--IdentityProvider.token={self.token}",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            command.append("--allow-root")  # CI and containers run as root
        # No news or update prompts (they would ask the internet and cover the page), and
        # no autosave: opening a notebook updates its kernel metadata, and a check must not
        # write that into the course's files.
        _write_lab_settings(private / "settings", {
            "apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
            "docmanager-extension/plugin": {"autosave": False},
        })
        self.log_path = private / "jupyter-lab.log"
        with open(self.log_path, "w", encoding="utf-8") as log:
            self.process = subprocess.Popen(
                command + self.extra_args,
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, cwd=self.root_dir,
                # Its own process group: stop() also ends kernels and proxied servers.
                start_new_session=True,
                preexec_fn=self.preexec_fn,
            )
        self.pgid = self.process.pid
        self._wait_until_ready()
        return self

    def stop(self, timeout: float = 20.0) -> None:
        """Stop the lab and everything it started; safe to call twice."""
        process, self.process = self.process, None
        if process is not None:
            # Asked to stop, the lab shuts its kernels down and ends the proxied MLflow
            # server; whatever is left of its group is then ended outright.
            end_process_group(process, timeout)
            # Kernels left by a lab that could not shut them down get the same treatment.
            for sig in (signal.SIGTERM, signal.SIGKILL):
                deadline = time.monotonic() + timeout / 2
                while (left := _processes(self.pgid, self._marker)) and time.monotonic() < deadline:
                    for pid, _ in left:
                        _signal(pid, sig)
                    time.sleep(0.2)
        if self._private is not None:
            self._private.cleanup()
            self._private = None

    def running_commands(self) -> list[str]:
        """Command lines still alive of the lab and what it started (kernels, MLflow ...).

        The lab's process group holds the lab and the MLflow server; kernels run in
        sessions of their own and are known by the lab's private runtime folder, which
        their command lines name.
        """
        if self.pgid is None:
            return []
        return [command for _, command in _processes(self.pgid, self._marker)]

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the lab's log."""
        return file_tail(self.log_path, lines)

    def __enter__(self) -> JupyterLabServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                log = self.log_tail()
                self.stop()
                raise CourseError(f"JupyterLab exited during start-up. The end of its log:\n{log}")
            try:
                answer = requests.get(self.url("api/status"), headers=self.auth_header, timeout=2)
                if answer.status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.25)
        log = self.log_tail()
        self.stop()
        raise CourseError(
            f"JupyterLab did not answer within {self.startup_timeout:.0f} s. "
            f"The end of its log:\n{log}"
        )

def _write_lab_settings(settings_dir: Path, plugins: dict[str, dict[str, Any]]) -> None:
    """User settings of JupyterLab plugins, e.g. ``{"docmanager-extension/plugin": {...}}``."""
    for plugin, values in plugins.items():
        path = settings_dir / "@jupyterlab" / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values), encoding="utf-8")


def _processes(pgid: int, marker: str | None) -> list[tuple[int, str]]:
    """``(pid, command line)`` of live processes in group ``pgid`` or naming ``marker``."""
    listing = subprocess.run(
        ["ps", "-e", "-ww", "-o", "pid=,pgid=,stat=,args="],
        capture_output=True, text=True, check=False,
    ).stdout
    found = []
    for line in listing.splitlines():
        fields = line.split(None, 3)
        if len(fields) < 4 or fields[2].startswith("Z"):  # a zombie has ended already
            continue
        pid, group, _, command = fields
        if int(pid) != os.getpid() and (
            group == str(pgid) or (marker and marker in command)
        ):
            found.append((int(pid), command))
    return found


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


# -- a real browser -------------------------------------------------------------------
#: Debian's Chromium and its driver (`apt-get install chromium chromium-driver`).
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def browser_missing() -> str | None:
    """Why :func:`open_chromium` cannot work on this machine, or ``None`` when it can."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        return (f"{' and '.join(missing)} not found: install them with "
                "`apt-get install chromium chromium-driver` (.ci/browser.sh does)")
    return None


def open_chromium(profile_dir: Path, size: tuple[int, int] = (1280, 800),
                  host_aliases: Sequence[str] = ()):
    """A headless Chromium driven by Selenium, with a page area of exactly ``size`` pixels.

    Uses the system's Chromium and chromedriver, so Selenium never downloads a driver.
    ``profile_dir`` must be a fresh folder. Each name in ``host_aliases`` resolves to
    127.0.0.1 inside this browser only, so a page on loopback can be opened under a
    public-looking name, as a browser on Binder does.
    """
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    reason = browser_missing()
    if reason:
        raise CourseError(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-extensions",
        f"--user-data-dir={profile_dir}", f"--window-size={size[0]},{size[1]}",
    ):
        options.add_argument(flag)
    if host_aliases:
        rules = ", ".join(f"MAP {name} 127.0.0.1" for name in host_aliases)
        options.add_argument(f"--host-resolver-rules={rules}")
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    # The window size includes the browser's frame; pin the page area itself.
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": size[0], "height": size[1], "deviceScaleFactor": 1, "mobile": False,
    })
    return driver
