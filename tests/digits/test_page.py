"""The drawing page in headless Chromium (Debian's chromium + chromium-driver, installed by
scripts/setup.sh): a person draws with the mouse, the page shows the model's digit."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

from .conftest import deploy_script_model

pytestmark = pytest.mark.integration

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def require_chromium(chromium: str = CHROMIUM, chromedriver: str = CHROMEDRIVER) -> None:
    """Skip without Chromium on a developer's machine; fail under CI, whose set-up installs it."""
    if not (shutil.which(chromium) and shutil.which(chromedriver)):
        missing = "Debian's chromium and chromium-driver are not installed (make setup installs them as root)"
        if os.environ.get("CI"):
            pytest.fail(f"{missing}, and CI={os.environ['CI']}: set-up should have installed them", pytrace=False)
        pytest.skip(missing)


@pytest.mark.parametrize("ci", ["", "true"])
def test_a_missing_chromium_skips_only_outside_ci(monkeypatch, ci):
    monkeypatch.setenv("CI", ci)
    expected = pytest.fail.Exception if ci else pytest.skip.Exception
    with pytest.raises(expected, match="chromium-driver are not installed"):
        require_chromium("/nonexistent/chromium", "/nonexistent/chromedriver")


@pytest.fixture(scope="module")
def browser():
    require_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="ferry-chromium-")
    # Without the background-networking flags, Chromium keeps dialling Google on a closed network.
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=800,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def page_url(stack, svm_artifact):
    deploy_script_model(stack.settings.url("endpoint"), "mnistclassifier", svm_artifact)
    return stack.settings.url("api") + "/"


def draw(browser, strokes: list[list[tuple[int, int]]]) -> str:
    """Draw polylines (canvas pixel coordinates) with the mouse; return the digit shown."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.find_element(By.ID, "clear").click()
    pad = browser.find_element(By.ID, "pad")
    for stroke in strokes:
        actions = ActionChains(browser, duration=10)
        # Offsets are from the element's centre (140, 140) in Selenium 4.
        actions.move_to_element_with_offset(pad, stroke[0][0] - 140, stroke[0][1] - 140).click_and_hold()
        previous = stroke[0]
        for point in stroke[1:]:
            actions.move_by_offset(point[0] - previous[0], point[1] - previous[1])
            previous = point
        actions.release().perform()
    answer = browser.find_element(By.ID, "answer")
    WebDriverWait(browser, 15).until(lambda _: answer.text.strip())
    return answer.text.strip()


def test_drawing_a_one_a_seven_and_a_two(browser, page_url):
    browser.get(page_url)
    assert "Draw a digit" in browser.title or "draw a digit" in browser.title
    one = [[(140, 50 + 10 * i) for i in range(19)]]
    assert draw(browser, one) == "1"
    top_bar = [(80 + 12 * i, 60) for i in range(11)]
    seven = [top_bar + [(200 - 7 * i, 60 + 19 * i) for i in range(1, 11)]]
    assert draw(browser, seven) == "7"
    two = [[(90, 80), (140, 55), (185, 85), (170, 140), (95, 215), (190, 215)]]
    assert draw(browser, two) == "2"


def test_a_click_without_drawing_asks_for_a_digit(browser, page_url):
    from selenium.webdriver.common.by import By

    browser.get(page_url)
    browser.find_element(By.ID, "send").click()
    assert "Draw a digit first" in browser.find_element(By.ID, "status").text
