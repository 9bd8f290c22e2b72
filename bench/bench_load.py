"""A workshop on one server: N sessions step the token stepper at once, over Streamlit's own websocket.

    python bench/bench_load.py [--sessions 5,10,20,30] [--steps 20] [--think 2.0] [--release 75]
    python bench/bench_load.py --url http://127.0.0.1:8501     # a running server, e.g. deploy/serve_many.sh

Each session is a websocket client speaking Streamlit's protocol (BackMsg / ForwardMsg protobufs, as the
browser does): it opens the stepper on its own typed text (carried in the link, app.textlink), then
presses Step (a fragment rerun, as a click does) `steps` times with a think time around `think` seconds.
Reported per room size: step latency median / p90 (send to script_finished), steps/s served, the server
process's CPU per step and cores busy, its RSS with the sessions open, per session, and after they close
and Streamlit's disconnected-session TTL has passed; and isolation: every step's "Token k: 'c'" must be
that session's own k-th byte (a session seeing another's stream, or a lost step, is counted).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import websockets  # noqa: E402  (a dependency of streamlit)
from streamlit.proto.BackMsg_pb2 import BackMsg  # noqa: E402
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg  # noqa: E402
from streamlit.proto.WidgetStates_pb2 import WidgetState  # noqa: E402

from app.serving import serve  # noqa: E402
from app.textlink import encode_link_text  # noqa: E402

TOKEN = re.compile(r"Token (\d+): \*\*'(.+?)'\*\*")
WORDS = [
    "memory",
    "level",
    "update",
    "token",
    "frequency",
    "nest",
    "gradient",
    "momentum",
    "retention",
    "surprise",
    "chunk",
]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("VmRSS"))
    return int(line.split()[1]) / 1024


def session_text(i: int) -> str:
    rnd = random.Random(i)
    return f"session {i}: " + " ".join(rnd.choice(WORDS) for _ in range(60))


class Client:
    """One browser tab, as far as the server can tell."""

    def __init__(self, ws, query: str):
        self.ws, self.query, self.page_hash, self.step_id, self.fragment = ws, query, "", None, ""
        self.shown: list[tuple[int, str]] = []

    async def run(self, widget_states=(), fragment: str = "") -> float:
        msg = BackMsg()
        cs = msg.rerun_script
        cs.query_string, cs.page_name = self.query, "stepper"
        if self.page_hash:
            cs.page_script_hash = self.page_hash
        cs.fragment_id = fragment
        cs.widget_states.widgets.extend(widget_states)
        t0 = time.perf_counter()
        await self.ws.send(msg.SerializeToString())
        self.shown = []
        while True:
            fm = ForwardMsg()
            fm.ParseFromString(await asyncio.wait_for(self.ws.recv(), 300))
            kind = fm.WhichOneof("type")
            if kind == "new_session":
                self.page_hash = fm.new_session.page_script_hash
            elif kind == "delta" and fm.delta.WhichOneof("type") == "new_element":
                el = fm.delta.new_element
                what = el.WhichOneof("type")
                if what == "button" and el.button.label == "Step":
                    self.step_id, self.fragment = el.button.id, fm.delta.fragment_id
                elif what == "markdown":
                    self.shown += [(int(k), c) for k, c in TOKEN.findall(el.markdown.body)]
            elif kind == "script_finished":
                return time.perf_counter() - t0

    async def step(self) -> float:
        return await self.run([WidgetState(id=self.step_id, trigger_value=True)], self.fragment)


async def one_session(url: str, i: int, steps: int, think: float, out: dict) -> None:
    text = session_text(i)
    query = f"stepper_source=Type+or+paste&stepper_typed_z={encode_link_text(text)}"
    async with websockets.connect(url.replace("http", "ws") + "/_stcore/stream", subprotocols=["streamlit"],
                                  max_size=None) as ws:  # fmt: skip
        client = Client(ws, query)
        await client.run()
        rnd = random.Random(1000 + i)
        for k in range(1, steps + 1):
            await asyncio.sleep(think * rnd.uniform(0.5, 1.5))
            out["latency"].append(await client.step())
            expected = (k, text.encode()[k : k + 1].decode().replace(" ", "␣"))
            if expected not in client.shown:
                out["mismatch"] += 1
        out["done"] += 1


async def room(url: str, n: int, steps: int, think: float) -> dict:
    out = {"latency": [], "mismatch": 0, "done": 0}
    await asyncio.gather(*(one_session(url, i, steps, think, out) for i in range(n)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", default="5,10,20,30")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--think", type=float, default=2.0, help="mean seconds between a session's steps")
    ap.add_argument("--release", type=float, default=75.0, help="seconds to wait after a room closes")
    ap.add_argument("--url", default=None, help="drive a running server instead (e.g. deploy/serve_many.sh behind "
                    "nginx): latency, throughput and isolation only")  # fmt: skip
    a = ap.parse_args()
    if a.url:
        print("| sessions | step latency median / p90 | steps/s | isolation errors |\n|---|---|---|---|")
        asyncio.run(room(a.url, 2, 2, 0.0))
        for n in map(int, a.sessions.split(",")):
            t0 = time.perf_counter()
            res = asyncio.run(room(a.url, n, a.steps, a.think))
            lat, wall = sorted(res["latency"]), time.perf_counter() - t0
            lost = n * a.steps - len(lat)
            print(f"| {n} | {statistics.median(lat):.2f} s / {lat[int(0.9 * (len(lat) - 1))]:.2f} s | "
                  f"{len(lat) / wall:.1f} | {res['mismatch'] + lost} |", flush=True)  # fmt: skip
        return
    with serve(with_process=True) as (url, proc):
        asyncio.run(room(url, 1, 2, 0.0))  # warm: the shared read-only models load once
        base = rss_mb(proc.pid)
        print(f"server RSS after warm-up: {base:.0f} MB; each session steps {a.steps} times, think ~{a.think:g} s\n")
        print("| sessions | step latency median / p90 | steps/s | server CPU per step | cores busy | RSS open "
              "(per session) | RSS after release | isolation errors |")  # fmt: skip
        print("|---|---|---|---|---|---|---|---|")
        for n in map(int, a.sessions.split(",")):
            cpu0, t0, rss0 = cpu_seconds(proc.pid), time.perf_counter(), rss_mb(proc.pid)
            res = asyncio.run(room(url, n, a.steps, a.think))
            wall, cpu = time.perf_counter() - t0, cpu_seconds(proc.pid) - cpu0
            rss_open = rss_mb(proc.pid)
            time.sleep(a.release)
            lat = sorted(res["latency"])
            p90 = lat[int(0.9 * (len(lat) - 1))]
            lost = n * a.steps - len(lat)
            print(f"| {n} | {statistics.median(lat):.2f} s / {p90:.2f} s | {len(lat) / wall:.1f} | "
                  f"{1000 * cpu / max(len(lat), 1):.0f} ms | {cpu / wall:.2f} | {rss_open:.0f} MB "
                  f"({(rss_open - rss0) / n:+.1f}) | {rss_mb(proc.pid):.0f} MB | "
                  f"{res['mismatch'] + lost} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
