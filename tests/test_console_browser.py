"""The console in a real browser: headless Chromium from Debian driven by selenium (chromium and
chromium-driver from apt, selenium from the dev extra; scripts/_bootstrap.sh installs them). Screenshots of each
step go to var/test-artifacts/console/."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.console import BANK, PASSWORDS, RunningConsole, recorded_calls, running_console, seed
from voiceivr.dialplan.store import list_versions

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "var" / "test-artifacts" / "console"
CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                       reason="needs chromium and chromium-driver from Debian (scripts/test installs them)"),
]

if CHROMIUM is not None:
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.remote.webelement import WebElement
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait


@pytest.fixture
def console(sqlite_url: str, tmp_path: Path) -> Iterator[RunningConsole]:
    from voiceivr.db import migrate
    from voiceivr.db.engine import make_engine

    engine = make_engine(sqlite_url)
    migrate.upgrade(engine)
    seed(engine)
    recorded_calls(tmp_path / "recordings", 2)
    with running_console(engine, recordings=tmp_path / "recordings") as running:
        yield running
    engine.dispose()


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1000", "--disable-extensions", "--no-first-run"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    driver.set_page_load_timeout(20)
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()


def shot(driver: WebDriver, name: str) -> None:
    driver.save_screenshot(str(SHOTS / f"{name}.png"))


def wait(driver: WebDriver, seconds: float = 15) -> WebDriverWait:
    return WebDriverWait(driver, seconds)


def sign_in(driver: WebDriver, url: str, name: str) -> None:
    driver.delete_all_cookies()
    driver.get(f"{url}/login")
    driver.find_element(By.ID, "name").send_keys(name)
    driver.find_element(By.ID, "password").send_keys(PASSWORDS[name])
    driver.find_element(By.ID, "signin").click()
    wait(driver).until(ec.presence_of_element_located((By.ID, "who")))


def set_draft(driver: WebDriver, text: str) -> None:
    """Put the text in the editor as typing would end (typing a whole dialplan key by key takes minutes)."""
    driver.execute_script(
        "const t = document.getElementById('draft'); t.value = arguments[0];"
        "t.dispatchEvent(new Event('input', {bubbles: true}));", text)


def flash(driver: WebDriver) -> str:
    return str(wait(driver).until(ec.presence_of_element_located((By.ID, "flash"))).text)


def submit(driver: WebDriver, button: WebElement) -> None:
    """Click a button that posts a form, and wait for the page it leads to: the old page's flash is still there
    until the browser has navigated, and reading it then is a stale element.

    The old page is marked with a window property that the new page does not have. (Waiting for the old <html>
    element to go stale raced the navigation: chromedriver sometimes answers a query about a node of the document
    being torn down with a generic "Node with given id does not belong to the document" error, not a stale
    element, and the wait gave up; it failed one CI run.) While the browser navigates, scripts can fail the
    same way; the wait retries on those."""
    driver.execute_script("window.__voiceivrOldPage = true")
    button.click()
    WebDriverWait(driver, 15, ignored_exceptions=(WebDriverException,)).until(
        lambda d: d.execute_script("return !window.__voiceivrOldPage && document.readyState === 'complete'"))


def test_edit_validate_simulate_publish_roll_back(console: RunningConsole, browser: WebDriver) -> None:
    url = console.url
    sign_in(browser, url, "pat")
    shot(browser, "01-dialplans")
    browser.get(f"{url}/dialplans/bank")
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "status"), "no problems"))

    typo_line = BANK.splitlines().index("    goto: main_menu") + 1
    set_draft(browser, BANK.replace("    goto: main_menu", "    goto: main_manu", 1))
    marker = wait(browser).until(ec.presence_of_element_located(
        (By.CSS_SELECTOR, f"#gutter span.bad[data-line='{typo_line}']")))
    problem = browser.find_element(By.CSS_SELECTOR, "#problems li")
    assert problem.get_attribute("data-line") == str(typo_line) and "main_manu" in problem.text
    assert len(browser.find_elements(By.CSS_SELECTOR, "#gutter span.bad")) == 1
    problem.click()  # jumps to the problem: the marked line is in view, the caret at its column
    wait(browser).until(lambda d: marker.is_displayed())
    caret = browser.execute_script("const t = document.getElementById('draft');"
                                   "return t.value.slice(0, t.selectionStart).split('\\n').length;")
    assert caret == typo_line
    shot(browser, "02-validation-marker")

    edited = BANK.replace("How can I help you today?", "What can I do for you today?")
    set_draft(browser, edited)
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "status"), "no problems"))
    script = browser.find_element(By.ID, "script")
    script.clear()
    script.send_keys("say what are your opening hours")
    browser.find_element(By.ID, "simulate").click()
    wait(browser, 30).until(ec.text_to_be_present_in_element((By.ID, "trace"), "intent hours"))
    assert "What can I do for you today?" in browser.find_element(By.ID, "trace").text
    shot(browser, "03-simulation")

    for box in browser.find_elements(By.CSS_SELECTOR, "#recordings input[type=checkbox]"):
        box.click()  # both recorded calls
    browser.find_element(By.ID, "whatif").click()
    wait(browser, 90).until(ec.text_to_be_present_in_element((By.ID, "whatif-status"), "replayed"))
    assert "2 call(s) replayed against live version 1 and the draft: 2 changed" in \
        browser.find_element(By.ID, "whatif-status").text
    calls = browser.find_elements(By.CSS_SELECTOR, ".whatif-call")
    assert len(calls) == 2 and all("changed prompts" in c.find_element(By.TAG_NAME, "h3").text for c in calls)
    assert "+ What can I do for you today?" in calls[0].find_element(By.CSS_SELECTOR, ".prompt-diff .new").text
    browser.execute_script("arguments[0].scrollIntoView()", calls[0])
    shot(browser, "04-what-if")

    browser.find_element(By.ID, "note").send_keys("friendlier menu")
    submit(browser, browser.find_element(By.ID, "publish"))
    assert flash(browser) == "published bank version 2"
    assert "friendlier menu" in browser.find_element(By.ID, "versions").text
    shot(browser, "05-published")

    submit(browser, browser.find_element(By.CSS_SELECTOR, "tr[data-version='1'] button.rollback"))
    assert flash(browser) == "rolled back to version 1: now version 3"
    shot(browser, "06-rolled-back")
    v1, v2, v3 = list_versions(console.engine, "bank")
    assert "What can I do" in v2.source and v3.source.startswith(v1.source)


def test_a_viewer_is_refused_a_publish(console: RunningConsole, browser: WebDriver) -> None:
    sign_in(browser, console.url, "vera")
    browser.get(f"{console.url}/dialplans/bank")
    button = browser.find_element(By.ID, "publish")
    assert not button.is_enabled()  # the page does not offer it...
    browser.execute_script("arguments[0].disabled = false;", button)
    button.click()  # ...and the server refuses it anyway
    message = wait(browser).until(ec.presence_of_element_located((By.ID, "message"))).text
    assert "needs the publisher role" in message and "vera is a viewer" in message
    shot(browser, "07-viewer-refused")
    assert [v.version for v in list_versions(console.engine, "bank")] == [1]


def test_a_publisher_splits_new_calls_and_the_stats_compare_the_versions(console: RunningConsole,
                                                                         browser: WebDriver) -> None:
    import datetime as dt

    import sqlalchemy as sa

    from voiceivr.actions.catalog import plugin_registry
    from voiceivr.db.models import Call
    from voiceivr.dialplan.split import get_split
    from voiceivr.dialplan.store import publish
    from voiceivr.settings import load_settings

    edited = BANK.replace("How can I help you today?", "What can I do for you today?")
    publish(console.engine, edited, "bank.yaml", plugin_registry(load_settings()[0]), "pat", "friendlier menu")
    sign_in(browser, console.url, "pat")
    browser.get(f"{console.url}/dialplans/bank")
    assert "No split" in browser.find_element(By.ID, "split-state").text
    percent = browser.find_element(By.CSS_SELECTOR, "#split-form input[name=percent]")
    percent.clear()
    percent.send_keys("25")
    browser.find_element(By.CSS_SELECTOR, "#split-form input[name=note]").send_keys("does the old menu do better?")
    submit(browser, browser.find_element(By.ID, "split-set"))
    assert "split set: version 1 gets 25 % of new calls" in flash(browser)
    assert "Version 1 gets 25 %" in browser.find_element(By.ID, "split-state").text
    browser.execute_script("document.getElementById('split-state').scrollIntoView()")
    shot(browser, "08-split-set")
    split = get_split(console.engine, "bank")
    assert split is not None and (split.version, split.percent, split.set_by) == (1, 25, "admin:pat")

    v1, v2 = list_versions(console.engine, "bank")
    now = dt.datetime.now(dt.UTC)
    with console.engine.begin() as conn:
        for n, (vid, outcome) in enumerate([(v1.id, "resolved"), (v1.id, "transferred"), (v2.id, "resolved"),
                                            (v2.id, "resolved"), (v2.id, "caller_hangup")]):
            conn.execute(sa.insert(Call).values(
                id=f"30000000-0000-4000-8000-00000000000{n}", started_at=now - dt.timedelta(minutes=9),
                ended_at=now - dt.timedelta(minutes=8), node="n", source="sip", dialplan_version_id=vid,
                outcome=outcome, resolved_tasks=1, engine_seconds=0.5, stats_json="{}"))
    browser.get(f"{console.url}/stats?since=1h")
    table = browser.find_element(By.ID, "by-version").text
    assert "bank v1" in table and "bank v2" in table and "2 (67 %)" in table
    browser.execute_script("document.getElementById('by-version').scrollIntoView()")
    shot(browser, "09-stats-per-version")
