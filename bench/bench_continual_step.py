"""How long one step of the continual-learning page takes: three models stream `--step` tokens and every
model's probes (every language, and Hope's per-level reset probes) are read, then the page redraws.

    python bench/bench_continual_step.py [--steps 10] [--step 32] [--no-browser]

Passes, in one run:
  library - ContinualLab.feed alone on the page's default models, and its probes timed alone;
  server  - the page's script (Streamlit's AppTest clicking "Feed B"): the whole rerun, no browser;
  browser - in headless Chromium: click "Feed B", wait until the caption shows the new token count.
Printed: median and 90th-percentile milliseconds per step, and browser / server.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.serving import IDLE, chromium, serve  # noqa: E402


def _summary(name: str, ms: list[float]) -> float:
    med = statistics.median(ms)
    p90 = sorted(ms)[int(0.9 * (len(ms) - 1))]
    print(f"{name:<16} median {med:7.1f} ms/step   p90 {p90:7.1f} ms   ({len(ms)} steps)")
    return med


def _library(steps: int, step: int) -> tuple[list[float], list[float]]:
    """Per step: the whole feed (it streams, then probes once), and one probe timed alone."""
    from app.continual_ui import DEFAULT_SETUP, new_lab
    from app.models import build_frozen

    lab = new_lab(DEFAULT_SETUP, lambda name: build_frozen(name, 0, device="cpu"))
    lab.probe_every = step
    lab.feed("A", step)  # warm-up
    full, probe = [], []
    for i in range(steps):
        t0 = time.perf_counter()
        lab.feed("AB"[i % 2], step)
        t1 = time.perf_counter()
        lab._measure()  # the same probes again (probes change nothing, so this is the probe's cost)
        full.append((t1 - t0) * 1000)
        probe.append((time.perf_counter() - t1) * 1000)
    return full, probe


def _server(steps: int) -> list[float]:
    from streamlit.testing.v1 import AppTest

    from app.registry import ROOT

    at = AppTest.from_file(str(ROOT / "app" / "main.py"), default_timeout=300)
    at.switch_page(str(ROOT / "pages" / "continual.py"))
    at.run()
    at.button(key="cl_feed_B").click().run()  # warm-up: goes live
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        at.button(key="cl_feed_B").click().run()
        times.append((time.perf_counter() - t0) * 1000)
    return times


def _browser(steps: int) -> list[float]:
    times = []
    with serve() as url, chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1800})
        page.goto(f"{url}/continual")
        page.wait_for_function("document.body.innerText.includes('Streamed ')", timeout=120_000)
        button = page.get_by_role("button", name="Feed B")
        button.click()  # warm-up: goes live from the shipped run
        page.wait_for_function(IDLE, timeout=120_000)
        for _ in range(steps):
            before = page.inner_text("body").split("Streamed ")[1].split(" tokens")[0]
            t0 = time.perf_counter()
            button.click()
            page.wait_for_function(
                f"!document.body.innerText.includes('Streamed {before} tokens') && {IDLE}", timeout=120_000
            )
            times.append((time.perf_counter() - t0) * 1000)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--step", type=int, default=32, help="tokens per step (the page's default)")
    ap.add_argument("--no-browser", action="store_true")
    args = ap.parse_args()
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.step} tokens per step")
    full, probe = _library(args.steps, args.step)
    f, p = _summary("library step", full), _summary("library probes", probe)
    print(f"probes are {100 * p / f:.0f}% of a library step")
    server = _summary("server", _server(args.steps))
    if not args.no_browser:
        b = _summary("browser", _browser(args.steps))
        print(f"browser / server {b / server:.2f}")


if __name__ == "__main__":
    main()
