"""The page at / in a real headless browser (Debian's chromium through Selenium and chromium-driver)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from serving import running, tiny_runs

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in the test extras")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return tiny_runs(tmp_path_factory.getbasetemp() / "serve-runs")


@pytest.fixture(scope="module")
def browser():
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        message = "Debian's chromium and chromium-driver are not installed (scripts/test installs them as root)"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI installs them: a missing browser there is a failure, not a skip
        pytest.skip(message)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=820,640"):
        options.add_argument(arg)
    # Selenium Manager would try to download a driver: the service names Debian's instead.
    with webdriver.Chrome(options=options, service=Service(executable_path=driver)) as chrome:
        yield chrome


def answer(browser, url: str, fields: dict[str, str], shot: str) -> None:
    """Load the page, fill the fields, press the button and wait for the model's answer."""
    browser.get(url)
    wait = WebDriverWait(browser, 60)
    wait.until(lambda b: not b.find_element(By.ID, "form").get_attribute("hidden"))
    for element, text in fields.items():
        box = browser.find_element(By.ID, element)
        box.clear()
        box.send_keys(text)
    browser.find_element(By.ID, "go").click()
    wait.until(lambda b: b.find_element(By.ID, "result").get_attribute("data-state") in ("done", "error"))
    if out := os.environ.get("GENPT_SCREENSHOTS"):  # docs/serving.png is taken this way (docs/serving.md)
        browser.save_screenshot(str(Path(out) / shot))


def test_page_classifies_typed_text_and_shows_probability_bars(runs, browser):
    with running(runs["sst2"]) as url:
        answer(browser, url, {"text": "a gorgeous, witty and moving film"}, "serving.png")
        result = browser.find_element(By.ID, "result")
        label = browser.find_element(By.ID, "label").text
        bars = result.find_elements(By.CLASS_NAME, "bar")
    assert result.get_attribute("data-state") == "done"
    assert label in ("0", "1") and len(bars) == 2
    percents = [float(b.find_element(By.CLASS_NAME, "num").text.rstrip("%")) for b in bars]
    assert sum(percents) == pytest.approx(100, abs=0.2)


def test_page_streams_generated_text_for_a_language_model(runs, browser):
    with running(runs["lm"]) as url:
        answer(browser, url, {"text": "ROMEO:", "max_tokens": "40"}, "serving-lm.png")
        made = browser.find_element(By.ID, "made").text
    assert browser.find_element(By.ID, "result").get_attribute("data-state") == "done"
    assert len(made.strip()) > 0


def test_page_shows_a_refusal_as_a_message(runs, browser):
    with running(runs["lm"], max_new_tokens=8) as url:
        answer(browser, url, {"text": "ROMEO:", "max_tokens": "40"}, "serving-refusal.png")
        shown = browser.find_element(By.ID, "result").text
    assert "max_tokens" in shown and "--max-new-tokens" in shown
