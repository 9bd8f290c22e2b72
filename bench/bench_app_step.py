"""How the token stepper steps and plays in the real app: `streamlit run` + headless Chromium, the default
model. Stepping and playing happen in the browser (the player, app/player.py); the server is asked for
windows of 32 tokens ahead and told where the player rests.

    python bench/bench_app_step.py [--steps 30] [--seconds 8]

Printed, in one run:
  step     - in Chromium: → pressed, until the next token is on screen (strip, heatmaps, curves and
             prediction redrawn), median and 90th percentile, for the shipped first view and for a typed
             text whose every window the server streams live;
  playback - in Chromium: tokens played per second at every speed setting over `seconds`, with the
             number of stalls (the player waited for a window);
  server   - the page's script alone (AppTest): a report of a resting position (what a step costs the
             server) and a window request (32 tokens streamed live), median milliseconds; and the ratio
             step-on-screen / server-report.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.serving import chromium, serve  # noqa: E402

TEXT = "Memory is a neural update caused by an input. " * 20
PLAYER = "Object.values(globalThis.__nestedPlayers || {})[0]"
READY = f"(() => {{ const p = {PLAYER}; return p && p.frames.has(p.index) && p.scalars.has(p.index); }})()"


def _summary(name: str, ms: list[float]) -> float:
    med = statistics.median(ms)
    p90 = sorted(ms)[int(0.9 * (len(ms) - 1))]
    print(f"{name:<28} median {med:8.1f} ms   p90 {p90:8.1f} ms   ({len(ms)} samples)")
    return med


def _steps(page, n: int) -> list[float]:
    """Milliseconds from a → press to the next token's text on screen, n times (no wait in between)."""
    times = []
    for _ in range(n):
        i = page.evaluate(f"{PLAYER}.index")
        t0 = time.perf_counter()
        page.keyboard.press("ArrowRight")
        page.wait_for_function(f"document.querySelector(\"[data-testid='nlp-head']\").innerText.startsWith('Token {i + 1}:')",
                               timeout=60_000, polling="raf")  # fmt: skip
        times.append((time.perf_counter() - t0) * 1000)
    return times


def _server(steps: int) -> tuple[list[float], list[float]]:
    from streamlit.testing.v1 import AppTest

    from app.registry import ROOT
    from tests.apptest import report

    at = AppTest.from_file(str(ROOT / "app" / "main.py"), default_timeout=120)
    at.switch_page(str(ROOT / "pages" / "stepper.py"))
    at.run()
    rest, window = [], []
    for k in range(1, steps + 1):
        t0 = time.perf_counter()
        report(at, k)
        rest.append((time.perf_counter() - t0) * 1000)
    for k in range(1, 6):
        t0 = time.perf_counter()
        report(at, 32 * k, need={"start": 32 * k, "nonce": f"w{k}"})
        window.append((time.perf_counter() - t0) * 1000)
    return rest, window


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--seconds", type=float, default=8.0)
    args = ap.parse_args()
    rest, window = _server(args.steps)
    with serve() as url, chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        page.goto(f"{url}/stepper")
        page.wait_for_function(READY, timeout=120_000)
        page.locator("h1").click()
        preset = _steps(page, args.steps)
        page.goto(f"{url}/stepper?stepper_source=Type+or+paste")
        page.wait_for_selector("textarea", timeout=90_000)
        page.locator("textarea").fill(TEXT)
        page.locator("textarea").press("Control+Enter")
        page.wait_for_function(READY, timeout=120_000)
        page.locator("h1").click()
        live = _steps(page, args.steps)
        rates = {}
        for speed in (1, 2, 5, 10, 30):
            page.goto(f"{url}/stepper?stepper_speed={speed}")
            page.wait_for_function(READY, timeout=120_000)
            page.get_by_test_id("nlp-play").click()
            page.wait_for_timeout(args.seconds * 1000)
            rates[speed] = page.evaluate(
                f"(() => {{ const s = {PLAYER}.stats; return [s.played, s.playSeconds, s.stalls]; }})()"
            )
    print("Token stepper, default model (hope), Chromium headless")
    m_step = _summary("step, shipped first view", preset)
    _summary("step, typed text (live)", live)
    for speed, (played, seconds, stalls) in rates.items():
        print(f"playback at {speed:>2} tokens/s: played {played / seconds:5.2f} tokens/s "
              f"({played / seconds / speed:6.1%} of the setting, {played} tokens in {seconds:.1f} s, {stalls} stalls)")  # fmt: skip
    m_rest = _summary("server: a resting report", rest)
    _summary("server: a window of 32 tokens", window)
    print(f"step on screen / server report = {m_step / m_rest:.2f}")


if __name__ == "__main__":
    main()
