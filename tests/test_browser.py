"""In a real browser (headless Chromium): the smoke report typesets its math with nothing loaded from outside the
machine and every image loads; in JupyterLab, notebook 08 runs and its replay explorer responds to the slider.

Skipped, saying so, where Chromium and ChromeDriver are not installed (Debian: apt install chromium
chromium-driver); CI installs them."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                                reason="no headless browser here: apt install chromium chromium-driver to run it")


@pytest.fixture(scope="module")
def course_build() -> Path:
    """The smoke course, run by the README's command into the session's build folder (the notebook tests reuse its
    checkpoints)."""
    out = Path(os.environ["GRLIB_BUILD"])
    done = subprocess.run([sys.executable, "-m", "grlib", "run", "--profile", "smoke", "--out", str(out)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,1000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def requested_urls(driver) -> list[str]:
    """Every URL the page asked the network for, from Chrome's performance log."""
    import json

    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def test_the_report_typesets_math_offline_and_every_image_loads(course_build, browser):
    from selenium.webdriver.support.ui import WebDriverWait

    page = course_build / "report" / "06_ddpm.html"
    browser.get_log("performance")  # start from an empty log
    browser.get(page.as_uri())
    WebDriverWait(browser, 60).until(lambda d: d.execute_script(
        "return window.MathJax && MathJax.Hub && MathJax.Hub.queue.pending === 0 && "
        "document.querySelectorAll('.MathJax, .MathJax_Display').length > 0"))
    assert browser.execute_script("return document.querySelectorAll('.MathJax, .MathJax_Display').length") > 20
    prose = browser.execute_script(
        "return Array.from(document.querySelectorAll('.jp-MarkdownOutput')).map(e => e.innerText).join(' ')")
    assert "$" not in prose, "raw $…$ left in the rendered text"
    images = browser.execute_script("return Array.from(document.images).map(i => [i.complete, i.naturalWidth])")
    assert images and all(complete and width > 0 for complete, width in images)
    outside = [u for u in requested_urls(browser) if not u.startswith(("file:", "data:", "about:"))]
    assert not outside, f"the page asked the network for {outside}"

    browser.get((course_build / "report" / "index.html").as_uri())
    links = browser.execute_script("return Array.from(document.links).map(a => a.getAttribute('href'))")
    assert {f"{n}.html" for n in ("00_setup_and_the_problem", "09_results")} <= set(links)
    assert browser.execute_script("return document.images.length > 0 && document.images[0].naturalWidth > 0")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def jupyterlab(course_build, tmp_path_factory):
    """JupyterLab on a copy of the notebooks, with the smoke build's results and checkpoints."""
    from grlib.course.notebooks import NOTEBOOK_DIR

    folder = tmp_path_factory.mktemp("lab")
    shutil.copy(NOTEBOOK_DIR / "09_results.ipynb", folder)
    port = free_port()
    env = {**os.environ, "GRLIB_BUILD": str(course_build), "GRLIB_PROFILE": "smoke"}
    server = subprocess.Popen([sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}",
                               "--ServerApp.token=", "--ServerApp.password=", "--ServerApp.disable_check_xsrf=True",
                               f"--ServerApp.root_dir={folder}", "--LabApp.news_url=", "--allow-root"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(1)
    yield f"http://127.0.0.1:{port}"
    server.terminate()
    server.wait(timeout=30)


def test_notebook_09_runs_in_jupyterlab_and_the_slider_changes_the_image(jupyterlab, browser):
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    def wait_for(what: str, condition, seconds: int = 120):
        """`condition`'s first truthy value; on a timeout, fails naming the step and showing the notebook's end."""
        waiting = WebDriverWait(browser, seconds, ignored_exceptions=(StaleElementReferenceException,))
        try:
            return waiting.until(condition)
        except TimeoutException:
            page = browser.execute_script("return document.body ? document.body.innerText : ''")
            pytest.fail(f"waited {seconds} s for {what}; the page ends with:\n{page[-3000:]}")

    def explorer_image() -> str:
        images = browser.find_elements(By.CSS_SELECTOR, ".widget-interact img, .jupyter-widgets-output-area img")
        return images[-1].get_attribute("src") if images else ""

    def slider():
        return browser.find_elements(By.CSS_SELECTOR, ".widget-slider .noUi-handle, .widget-slider input")

    browser.get(f"{jupyterlab}/lab/tree/09_results.ipynb")
    wait_for("the notebook's cells", lambda d: d.find_elements(By.CSS_SELECTOR, ".jp-Notebook .jp-Cell"))
    wait_for("an idle kernel", lambda d: "Idle" in d.find_element(By.CSS_SELECTOR, ".jp-Notebook").get_attribute(
        "class") or d.find_elements(By.XPATH, "//*[contains(@title, 'Kernel Idle') or contains(text(), 'Idle')]"))
    wait_for("the Run menu", ready.element_to_be_clickable(
        (By.XPATH, "//div[contains(@class, 'lm-MenuBar-itemLabel') and text()='Run']"))).click()
    wait_for("Run All Cells", ready.element_to_be_clickable(
        (By.XPATH, "//div[contains(@class, 'lm-Menu-itemLabel') and text()='Run All Cells']"))).click()
    wait_for("the explorer's slider", lambda d: slider(), seconds=600)
    assert browser.find_elements(By.CSS_SELECTOR, ".widget-dropdown select"), "the method menu is shown"

    before = wait_for("the explorer's image", lambda d: explorer_image())
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", slider()[0])
    slider()[0].click()
    slider()[0].send_keys(Keys.ARROW_LEFT)
    wait_for("a new image after moving the slider", lambda d: explorer_image() not in ("", before))
