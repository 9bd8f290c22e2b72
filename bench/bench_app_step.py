"""How long one step of the token stepper takes in the real app: `streamlit run` + headless Chromium,
pressing → and waiting until the page shows the next token (its strip, heatmaps, curves and prediction
redrawn), on the default model.

    python bench/bench_app_step.py [--steps 20]

Passes, in one run:
  server   - the app's script alone (Streamlit's AppTest clicking Step): a whole-page rerun, which bounds
             the fragment rerun a real step makes; no browser, no network;
  live     - in Chromium, a typed text: every step streams its token through the model;
  redraw   - in Chromium, the same tokens again: the run-state has them, so a step only redraws;
  preset   - in Chromium, the default sample, whose first view comes from the shipped precomputed run.
Printed: median and 90th-percentile milliseconds per step, live / redraw and live / server.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.serving import IDLE, chromium, serve  # noqa: E402

TEXT = "Memory is a neural update caused by an input. " * 4


def _wait_token(page, i: int) -> None:
    page.wait_for_function(f"document.body.innerText.includes('Token {i}:')", timeout=60_000)
    page.wait_for_function(IDLE, timeout=60_000)


def _pass(page, start: int, steps: int, key: str) -> list[float]:
    times = []
    for i in range(start + 1, start + steps + 1) if key == "ArrowRight" else range(start - 1, start - steps - 1, -1):
        t0 = time.perf_counter()
        page.keyboard.press(key)
        _wait_token(page, i)
        times.append((time.perf_counter() - t0) * 1000)
    return times


def _summary(name: str, ms: list[float]) -> float:
    med = statistics.median(ms)
    p90 = sorted(ms)[int(0.9 * (len(ms) - 1))]
    print(f"{name:<8} median {med:7.1f} ms/step   p90 {p90:7.1f} ms   ({len(ms)} steps)")
    return med


def _server_pass(steps: int) -> list[float]:
    from streamlit.testing.v1 import AppTest

    from app.registry import ROOT

    at = AppTest.from_file(str(ROOT / "app" / "main.py"), default_timeout=120)
    at.switch_page(str(ROOT / "pages" / "stepper.py"))
    at.run()
    at.button(key="stepper_step").click().run()  # warm-up
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        at.button(key="stepper_step").click().run()
        times.append((time.perf_counter() - t0) * 1000)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    server = _server_pass(args.steps)
    with serve() as url, chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        page.goto(f"{url}/stepper?stepper_source=Type+or+paste")
        page.wait_for_selector("textarea", timeout=90_000)
        page.locator("textarea").fill(TEXT)
        page.locator("textarea").press("Control+Enter")
        _wait_token(page, 0)
        page.wait_for_timeout(1500)
        page.locator("h1").click()  # focus the page so the → / ← shortcuts reach it
        live = _pass(page, 0, args.steps, "ArrowRight")
        redraw = _pass(page, args.steps, args.steps, "ArrowLeft")
        page.goto(f"{url}/stepper?preset=stepper-first-look")
        _wait_token(page, 20)
        page.wait_for_timeout(1500)
        page.locator("h1").click()
        preset = _pass(page, 20, min(args.steps, 30), "ArrowRight")
    print("Token stepper, default model, one step = keypress until the next token is on screen")
    m_server = _summary("server", server)
    m_live, m_redraw = _summary("live", live), _summary("redraw", redraw)
    _summary("preset", preset)
    print(f"live / redraw = {m_live / m_redraw:.2f}   live / server = {m_live / m_server:.2f}   (goal: < 150 ms)")


if __name__ == "__main__":
    main()
