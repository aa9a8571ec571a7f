"""Take the course's pictures of the MLflow UI from the real thing (`make figures`).

Starts a tracking server on a fresh temporary workspace, opens its UI in headless
Chromium and photographs what a reader sees at each step: the JupyterLab launcher with the
MLflow UI tile, the fresh store with only the Default experiment, then, after notebook 03's
run (trained in a real Jupyter kernel by `utils.ensure_example_run`, with the notebook's
default sizes), the experiment's runs, the run page, the run's artifacts and the logged
model. The PNGs are reduced to a palette and written to notebooks/figures/.

    .venv/bin/python scripts/figures.py [--only NAME ...] [--keep-workspace]

Needs /usr/bin/chromium and /usr/bin/chromedriver, and the IMDB data (COURSE_DATA_DIR).
Takes about two minutes on two cores, most of it the training run.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools.lab import JupyterLabServer, browser_missing, open_chromium  # noqa: E402
from utils.tracking import TrackingServer  # noqa: E402
from utils.workspace import Workspace, get_workspace  # noqa: E402

FIGURES = ROOT / "notebooks" / "figures"
SIZE = (1280, 800)
MAX_BYTES = 150_000
EXPERIMENT, RUN = "dl_model_chapter02", "chapter02"
# Figure name -> what it shows (the alt text suggested for the notebooks).
FIGURES_SHOWN = {
    "00_lab_launcher": "The JupyterLab launcher with the MLflow UI tile",
    "01_default_experiment": "The MLflow UI of a fresh store: only the Default experiment",
    "03_experiment_runs": "Experiment dl_model_chapter02 with its run chapter02",
    "03_model_metrics": "The run's Model metrics tab: the training curve, every 4 steps",
    "03_system_metrics": "The run's System metrics tab: CPU and memory while it trained",
    "04_run_page": "The page of run chapter02: parameters, metrics, datasets and tags",
    "05_run_artifacts": "The run's artifacts: model_summary.txt",
    "05_logged_model": "The logged model of run chapter02 and its files",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", choices=sorted(FIGURES_SHOWN),
                        help="write only these figures (all are taken)")
    parser.add_argument("--keep-workspace", action="store_true",
                        help="keep the temporary workspace and say where it is")
    parser.add_argument("--workspace", type=Path,
                        help="reuse a workspace kept by --keep-workspace (to try changes to "
                             "this script without training again; figure 01 is then not fresh)")
    args = parser.parse_args(argv)
    reason = browser_missing()
    if reason:
        print(f"error: {reason}", file=sys.stderr)
        return 1
    wanted = set(args.only or FIGURES_SHOWN)
    os.environ.update(MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true",
                      HF_HUB_OFFLINE=os.environ.get("HF_HUB_OFFLINE", "1"))
    os.environ.pop("MLFLOW_TRACKING_URI", None)

    base = Path(tempfile.mkdtemp(prefix="mlflow-course-"))
    os.environ["COURSE_WORKSPACE"] = str(args.workspace or base / "workspace")
    workspace = get_workspace()
    started = time.monotonic()
    shots: dict[str, bytes] = {}
    try:
        shots["00_lab_launcher"] = _lab_launcher(base)
        with TrackingServer(workspace=workspace, port=0) as server:
            driver = open_chromium(base / "chromium-profile", size=SIZE)
            try:
                shots.update(_ui_pictures(driver, server, workspace))
            except Exception:
                failed = ROOT / "build" / "screenshots" / "figures-failure.png"
                failed.parent.mkdir(parents=True, exist_ok=True)
                driver.save_screenshot(str(failed))
                print(f"the page at the failure: {failed.relative_to(ROOT)}", file=sys.stderr)
                raise
            finally:
                driver.quit()
    finally:
        if args.keep_workspace:
            print(f"workspace kept in {workspace.path}")
        else:
            shutil.rmtree(base, ignore_errors=True)

    FIGURES.mkdir(parents=True, exist_ok=True)
    for name, png in shots.items():
        if name not in wanted:
            continue
        data = _small_png(png)
        path = FIGURES / f"{name}.png"
        path.write_bytes(data)
        flag = "" if len(data) <= MAX_BYTES else f"  (over {MAX_BYTES // 1000} KB!)"
        print(f"{path.relative_to(ROOT)}  {len(data) // 1024} KB{flag}")
    print(f"done in {time.monotonic() - started:.0f} s")
    return 0


# -- the pictures ---------------------------------------------------------------------
def _lab_launcher(base: Path) -> bytes:
    from selenium.webdriver.common.by import By

    with JupyterLabServer(root_dir=ROOT) as lab:
        driver = open_chromium(base / "chromium-lab-profile", size=SIZE)
        try:
            driver.get(lab.page(f"lab?token={lab.token}"))
            _wait(driver).until(_visible_css('.jp-LauncherCard[title^="MLflow UI"]'))
            # Fold the file browser away: the launcher is the subject.
            driver.find_element(By.CSS_SELECTOR, '.jp-SideBar li[data-id="filebrowser"]').click()
            time.sleep(1)  # let icons and fonts settle
            return driver.get_screenshot_as_png()
        finally:
            driver.quit()


def _ui_pictures(driver, server: TrackingServer, workspace: Workspace) -> dict[str, bytes]:
    from selenium.webdriver.common.by import By

    shots = {}
    wait = _wait(driver)
    driver.get(server.url)
    # What the course is about: model training, not the GenAI pages MLflow opens on.
    wait.until(_clickable_text("Model training")).click()
    _close_side_panels(driver)
    wait.until(_clickable_link("Experiments")).click()
    wait.until(_clickable_link("Default"))
    shots["01_default_experiment"] = _shot(driver)

    print("  training notebook 03's run in a kernel ...", flush=True)
    trained = time.monotonic()
    run_id, experiment_id = _train_example_run(workspace)
    print(f"  run {run_id} ready in {time.monotonic() - trained:.0f} s", flush=True)
    driver.get(server.url)
    wait.until(_clickable_link("Experiments")).click()
    wait.until(_clickable_link(EXPERIMENT)).click()
    wait.until(_clickable_link(RUN))
    shots["03_experiment_runs"] = _shot(driver)

    driver.find_element(By.LINK_TEXT, RUN).click()
    wait.until(_visible_xpath("//a[normalize-space(text())='test_accuracy']"))
    shots["04_run_page"] = _shot(driver)

    wait.until(_clickable_text("Model metrics")).click()
    # The charts of the step metrics: the training curve the course records every 4 steps.
    search = wait.until(_visible_css('input[placeholder="Search metric charts"]'))
    search.send_keys("_step")
    wait.until(_visible_xpath(_with_text("train_cross_entropy_step")))
    shots["03_model_metrics"] = _shot(driver)

    wait.until(_clickable_text("System metrics")).click()
    wait.until(_visible_xpath(_with_text("cpu_utilization_percentage")))
    shots["03_system_metrics"] = _shot(driver)

    driver.get(server.run_url(experiment_id, run_id) + "/artifacts")
    wait.until(_clickable_text("model_summary.txt")).click()
    wait.until(_visible_xpath(_with_text("adapter.backbone.encoder")))
    shots["05_run_artifacts"] = _shot(driver)

    driver.get(f"{server.experiment_url(experiment_id)}/models")
    wait.until(_clickable_link("model")).click()
    wait.until(_clickable_text("Artifacts")).click()
    wait.until(_clickable_text("MLmodel")).click()
    wait.until(_visible_xpath(_with_text("flavors")))
    shots["05_logged_model"] = _shot(driver)
    return shots


def _train_example_run(workspace: Workspace) -> tuple[str, str]:
    """Notebook 03's run, made in a Jupyter kernel as a reader's notebook makes it."""
    from jupyter_client.manager import start_new_kernel

    code = (
        "import utils, mlflow\n"
        "utils.use_workspace()\n"
        f"run_id = utils.ensure_example_run(experiment_name={EXPERIMENT!r}, run_name={RUN!r})\n"
        "print('RUN', run_id, mlflow.get_run(run_id).info.experiment_id)\n"
    )
    env = {**os.environ, "COURSE_WORKSPACE": str(workspace.path)}
    manager, client = start_new_kernel(kernel_name="python3", env=env, cwd=str(ROOT / "notebooks"))
    printed: list[str] = []

    def keep(message):
        if message["msg_type"] == "stream":
            printed.append(message["content"]["text"])
        elif message["msg_type"] == "error":
            printed.append("\n".join(message["content"]["traceback"]))

    try:
        reply = client.execute_interactive(code, timeout=1200, output_hook=keep)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    text = "".join(printed)
    if reply["content"]["status"] != "ok":
        raise RuntimeError(f"training the example run failed:\n{text[-3000:]}")
    _, run_id, experiment_id = next(l for l in text.splitlines() if l.startswith("RUN ")).split()
    return run_id, experiment_id


# -- browser helpers ------------------------------------------------------------------
def _wait(driver, seconds: float = 90):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, seconds)


def _clickable_text(text: str):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC

    return EC.element_to_be_clickable((By.XPATH, f"//*[normalize-space(text())='{text}']"))


def _clickable_link(text: str):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC

    return EC.element_to_be_clickable((By.LINK_TEXT, text))


def _with_text(part: str) -> str:
    """XPath of elements with a text node containing ``part`` (highlighted code splits text)."""
    return f"//*[text()[contains(., '{part}')]]"


def _visible_xpath(xpath: str):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC

    return EC.visibility_of_element_located((By.XPATH, xpath))


def _visible_css(selector: str):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC

    return EC.visibility_of_element_located((By.CSS_SELECTOR, selector))


def _close_side_panels(driver) -> None:
    """Close the assistant panel and the telemetry notice, as a reader would."""
    from selenium.webdriver.common.by import By

    time.sleep(2)  # both appear a moment after the page
    for selector in ('button[data-component-id="mlflow.assistant.chat_panel.close"]',
                     '[role="alert"] button, [class*="alert"] button[aria-label="Close"]'):
        for button in driver.find_elements(By.CSS_SELECTOR, selector):
            if button.is_displayed():
                button.click()


def _shot(driver) -> bytes:
    print(f"  photographed {driver.current_url}", flush=True)
    time.sleep(1.5)  # charts and tables finish their layout after the data arrives
    return driver.get_screenshot_as_png()


def _small_png(png: bytes) -> bytes:
    """The screenshot as a 256-colour palette PNG (UI pictures have few colours)."""
    try:
        from PIL import Image
    except ImportError:
        return png
    image = Image.open(io.BytesIO(png)).convert("RGB")
    palette = image.quantize(colors=256, method=Image.Quantize.MEDIANCUT,
                             dither=Image.Dither.NONE)
    out = io.BytesIO()
    palette.save(out, format="PNG", optimize=True)
    return out.getvalue() if out.tell() < len(png) else png


if __name__ == "__main__":
    sys.exit(main())
