"""The course in a real browser: JupyterLab, notebook 01 and its Chinese twin, and the MLflow
UI inside the lab.

Headless Chromium (Debian's package) opens a real `jupyter lab` under a public-looking
name, as on Binder: the launcher's MLflow UI tile, notebook 01 in English and in Chinese
(drawn with a CJK font), then the UI at <lab>/mlflow/ before and after a training run. Screenshots go to build/screenshots/browser/.
Needs /usr/bin/chromium and /usr/bin/chromedriver (`.ci/browser.sh` installs them).
"""

import os
import subprocess
import sys
import time

import nbformat
import pytest

from tools.lab import JupyterLabServer, browser_missing, open_chromium
from utils.workspace import repo_root

pytestmark = [
    pytest.mark.full,
    pytest.mark.skipif(browser_missing() is not None, reason=str(browser_missing())),
]

ROOT = repo_root()
PUBLIC_HOST = "hub.example.org"
SCREENSHOTS = ROOT / "build" / "screenshots" / "browser"
EXPERIMENT, RUN = "dl_model_chapter02", "chapter02"


def _by_text(text, tag="*"):
    from selenium.webdriver.common.by import By

    return By.XPATH, f"//{tag}[normalize-space(text())='{text}']"


@pytest.fixture
def workspace(tmp_path):
    path = tmp_path / "workspace"
    path.mkdir()
    return path


@pytest.fixture
def lab(workspace):
    server = JupyterLabServer(
        root_dir=ROOT,
        env={
            "COURSE_WORKSPACE": str(workspace),
            "MLFLOW_TRACKING_URI": "",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "true",
        },
        extra_args=["--ServerApp.allow_remote_access=True"],  # reached as hub.example.org
    )
    server.start()
    yield server
    server.stop()
    assert server.running_commands() == [], "the lab left processes behind"


@pytest.fixture
def browser(tmp_path):
    driver = open_chromium(tmp_path / "chromium-profile", host_aliases=[PUBLIC_HOST])
    yield driver
    driver.quit()


def _screenshot(driver, name):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SCREENSHOTS / name))


def _log_example_run(workspace):
    """Notebook 03's run, through its helper, with tiny sizes (about half a minute)."""
    env = {**os.environ, "COURSE_WORKSPACE": str(workspace), "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "MLFLOW_DISABLE_TELEMETRY": "true"}
    env.pop("MLFLOW_TRACKING_URI", None)
    code = (
        "import utils\n"
        f"print(utils.ensure_example_run(experiment_name={EXPERIMENT!r}, run_name={RUN!r},"
        " train_size=16, val_size=8, test_size=8, batch_size=8, max_length=32))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


def test_the_course_in_jupyterlab_with_the_mlflow_ui(lab, browser, workspace):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 90)
    started = time.monotonic()

    # The launcher offers the MLflow UI next to the notebook kernels.
    browser.get(lab.page(f"lab?token={lab.token}", host=PUBLIC_HOST))
    tile = wait.until(EC.element_to_be_clickable(
        (By.CSS_SELECTOR, '.jp-LauncherCard[title^="MLflow UI"]')))
    _screenshot(browser, "1_launcher.png")

    # The tile opens <lab>/mlflow/ in a tab of its own: a fresh store, only Default.
    lab_tab = browser.current_window_handle
    tile.click()
    wait.until(lambda d: len(d.window_handles) == 2)
    mlflow_tab = next(h for h in browser.window_handles if h != lab_tab)
    browser.switch_to.window(mlflow_tab)
    wait.until(EC.url_contains(f"{PUBLIC_HOST}:{lab.port}/mlflow/"))
    wait.until(EC.element_to_be_clickable(_by_text("Model training"))).click()
    wait.until(EC.element_to_be_clickable((By.LINK_TEXT, "Experiments"))).click()
    wait.until(EC.element_to_be_clickable((By.LINK_TEXT, "Default")))
    assert not browser.find_elements(By.LINK_TEXT, EXPERIMENT)
    _screenshot(browser, "2_mlflow_fresh_store.png")

    # Notebook 01 opens where the Binder badge points, with its title rendered.
    browser.switch_to.window(lab_tab)
    browser.get(lab.page("lab/tree/notebooks/01_local_setup.ipynb", host=PUBLIC_HOST))
    wait.until(EC.visibility_of_element_located(
        (By.XPATH, "//*[contains(@class,'lm-TabBar-tabLabel')][text()='01_local_setup.ipynb']")))
    title = wait.until(EC.visibility_of_element_located(
        (By.CSS_SELECTOR, ".jp-RenderedMarkdown h1")))
    assert "Setting up MLflow locally" in title.text
    # Its kernel starts; stopping the lab must end it too (see the fixture).
    wait.until(lambda _: any("ipykernel" in c for c in lab.running_commands()))
    _screenshot(browser, "3_notebook_01.png")

    # The Chinese edition: the same notebook in notebooks/zh/, its prose in Chinese, drawn with a
    # font that has Chinese glyphs (without one, Chromium draws boxes).
    fonts = subprocess.run(["fc-list", ":lang=zh", "family"], capture_output=True, text=True).stdout
    assert fonts.strip(), "no font draws Chinese: run .ci/browser.sh (fonts-noto-cjk)"
    twin = ROOT / "notebooks" / "zh" / "01_local_setup.ipynb"
    heading = nbformat.read(twin, as_version=4).cells[0].source.splitlines()[0].lstrip("# ").strip()
    assert any("\u4e00" <= ch <= "\u9fff" for ch in heading), heading
    browser.get(lab.page("lab/tree/notebooks/zh/01_local_setup.ipynb", host=PUBLIC_HOST))
    wait.until(EC.visibility_of_element_located(
        (By.XPATH, f"//*[contains(@class,'jp-RenderedMarkdown')]//h1[contains(normalize-space(.), '{heading}')]")))
    _screenshot(browser, "3_notebook_01_zh.png")
    lab_checked = time.monotonic() - started

    # Notebook 03's run appears in the UI: the experiment, the run, its metrics.
    run_id = _log_example_run(workspace)
    browser.switch_to.window(mlflow_tab)
    browser.refresh()
    wait.until(EC.element_to_be_clickable((By.LINK_TEXT, EXPERIMENT))).click()
    wait.until(EC.element_to_be_clickable((By.LINK_TEXT, RUN)))
    _screenshot(browser, "4_experiment_runs.png")
    browser.find_element(By.LINK_TEXT, RUN).click()
    wait.until(EC.url_contains(f"/runs/{run_id}"))
    wait.until(EC.visibility_of_element_located(_by_text("test_accuracy", "a")))
    wait.until(EC.visibility_of_element_located(_by_text("val_cross_entropy", "a")))
    _screenshot(browser, "5_run_page.png")
    print(f"lab, notebook and fresh UI checked in {lab_checked:.0f} s; whole test "
          f"{time.monotonic() - started:.0f} s; screenshots in {SCREENSHOTS.relative_to(ROOT)}/")
