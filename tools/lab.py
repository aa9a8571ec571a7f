"""A real JupyterLab and a real browser, for the course's checks and its pictures.

:class:`JupyterLabServer` runs ``jupyter lab`` on loopback the way a reader opens the course;
:func:`open_chromium` drives Debian's headless Chromium with Selenium. The browser test
(``tests/test_browser.py``), the proxy test and ``tools/figures.py`` use them.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import psutil

from utils.errors import CourseError
from utils.tracking import DEFAULT_HOST, BackgroundServer


class JupyterLabServer(BackgroundServer):
    """A token-protected ``jupyter lab`` on loopback without a browser of its own, whose
    settings, layouts and runtime files live in a private folder, so that nothing a reader
    saved changes what it shows. :meth:`stop` also ends its kernels and the MLflow server
    behind ``/mlflow/``.

    >>> with JupyterLabServer(root_dir=".") as lab:   # doctest: +SKIP
    ...     print(lab.page("lab/tree/notebooks/01_local_setup.ipynb"))
    """

    name = "JupyterLab"

    def __init__(self, root_dir: Path, port: int = 0, token: str | None = None,
                 env: dict[str, str] | None = None, extra_args: Sequence[str] = (),
                 startup_timeout: float = 90.0, preexec_fn=None) -> None:
        super().__init__(port, startup_timeout)
        self.root_dir = Path(root_dir)
        self.preexec_fn = preexec_fn  # e.g. the memory benchmark's: join a cgroup
        self.token = token or secrets.token_hex(16)
        self.env = dict(env or {})
        self.extra_args = list(extra_args)
        #: The lab's process group; kept after stop() to check that nothing outlived it.
        self.pgid: int | None = None
        self._private: tempfile.TemporaryDirectory | None = None
        self._marker: str | None = None  # the private folder, named by its kernels' commands

    def page(self, path: str = "", host: str = DEFAULT_HOST) -> str:
        """The address of ``path`` in the lab, as seen by a browser that calls it ``host``."""
        return f"http://{host}:{self.port}/{path.lstrip('/')}"

    @property
    def auth_header(self) -> dict[str, str]:
        """The header that logs a plain HTTP client into the lab."""
        return {"Authorization": f"token {self.token}"}

    @property
    def ready_path(self) -> str:
        return f"/api/status?token={self.token}"

    def prepare(self):
        jupyter = Path(sys.executable).with_name("jupyter")
        if not jupyter.exists():
            raise CourseError(f"JupyterLab is not installed next to {Path(sys.executable).name}. "
                              "Run `make setup` in the course folder.")
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
            f"--ServerApp.ip={self.host}",
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
        return command + self.extra_args, private / "jupyter-lab.log", self.root_dir, env

    def start(self) -> JupyterLabServer:
        super().start()
        self.pgid = self.process.pid
        return self

    def stop(self, timeout: float = 20.0) -> None:
        """Stop the lab and everything it started; safe to call twice."""
        super().stop(timeout)
        if self._private is not None:
            self._private.cleanup()
            self._private = None

    def running_commands(self) -> list[str]:
        """Command lines still alive of the lab and what it started (kernels, MLflow ...):
        its process group, and the processes whose command line names its private folder."""
        if self.pgid is None:
            return []
        found = []
        for process in psutil.process_iter(["cmdline", "status"]):
            command = " ".join(process.info["cmdline"] or [])
            try:
                ours = os.getpgid(process.pid) == self.pgid or self._marker in command
                ours = ours and process.pid != os.getpid()
            except OSError:
                continue
            if ours and process.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(command)
        return found


def _write_lab_settings(settings_dir: Path, plugins: dict[str, dict]) -> None:
    """User settings of JupyterLab plugins, e.g. ``{"docmanager-extension/plugin": {...}}``."""
    for plugin, values in plugins.items():
        path = settings_dir / "@jupyterlab" / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values), encoding="utf-8")


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
