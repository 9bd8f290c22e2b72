"""One real-browser test: `streamlit run` on a free port, headless Chromium, every registered page."""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from app.registry import PAGES, ROOT

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
REQUIRED = os.environ.get("NESTED_REQUIRE_BROWSER") == "1"
pytestmark = pytest.mark.browser


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    port = _free_port()
    env = dict(os.environ, STREAMLIT_BROWSER_GATHER_USAGE_STATS="false")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app" / "main.py"), "--server.port", str(port),
         "--server.headless", "true", "--browser.gatherUsageStats", "false"],  # fmt: skip
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.5)
        else:
            raise RuntimeError("streamlit did not answer /_stcore/health within 60 s")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        if REQUIRED:
            pytest.fail(f"chromium not found at {CHROMIUM} (NESTED_REQUIRE_BROWSER=1)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield b
        b.close()


def test_every_page_renders_in_a_real_browser(server, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    for spec in PAGES:
        page.goto(f"{server}/{spec.url}")
        page.wait_for_selector("h1", timeout=60_000)
        # wait for the script run to finish (the status widget disappears)
        page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=90_000)
        assert page.locator("[data-testid='stException']").count() == 0, spec.url_path
        assert page.get_by_role("dialog").count() == 0, spec.url_path  # e.g. "Page not found"
        assert "Traceback" not in page.inner_text("body"), spec.url_path
        shot = tmp_path / f"{spec.url_path}.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
    page.close()


def test_stepper_steps_five_tokens_and_the_plots_change(server, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1600})
    idle = "!document.querySelector('[data-testid=\"stStatusWidget\"]')"
    page.goto(f"{server}/")
    page.wait_for_selector("h1", timeout=60_000)
    page.wait_for_function(idle, timeout=90_000)
    page.wait_for_timeout(500)
    page.locator("[data-testid='stSidebarNav'] a[href$='/stepper']").click(timeout=60_000)
    page.wait_for_selector("text=Step", timeout=60_000)
    page.wait_for_function(idle, timeout=90_000)
    charts = page.locator("[data-testid='stPlotlyChart']")
    charts.nth(1).wait_for(timeout=60_000)
    before = [charts.nth(i).screenshot() for i in (0, 1)]
    for _ in range(5):
        page.get_by_role("button", name="Step").click()
        page.wait_for_timeout(300)
        page.wait_for_function(idle, timeout=90_000)
    page.wait_for_timeout(1500)
    assert page.get_by_text("Token 5:").count() >= 1
    after = [charts.nth(i).screenshot() for i in (0, 1)]
    assert before[0] != after[0], "the token strip did not change"
    assert before[1] != after[1], "the memory heatmap did not change"
    assert page.locator("[data-testid='stException']").count() == 0
    page.close()
