"""A workshop on one server: N sessions step the token stepper at once, over Streamlit's own websocket.

    python bench/bench_load.py [--sessions 5,10,20,30] [--steps 20] [--think 2.0] [--release 75]
    python bench/bench_load.py --url http://127.0.0.1:8501     # a running server, e.g. deploy/serve_many.sh

Each session is a websocket client speaking Streamlit's protocol (BackMsg / ForwardMsg protobufs, as the
browser does): it opens the stepper on its own typed text (carried in the link, app.textlink), then
steps `steps` times with a think time around `think` seconds. Stepping happens in the browser (the
stepper's player, app/player.py): what reaches the server is the player's report of the token it rests
on (a fragment rerun) and, every 32 tokens, its request for the next window of frames.
Reported per room size: step latency median / p90 (send to script_finished), steps/s served, the server
process's CPU per step (the steps alone: the room steps once every tab is open; opening a page is
reported apart) and cores busy, its RSS with the sessions open, per session, and after they close and
Streamlit's disconnected-session TTL has passed; and isolation: the byte the server sent for every token
stepped must be that session's own k-th byte (a session seeing another's stream, or a lost step, is counted).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
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
    """One browser tab, as far as the server can tell: it speaks the stepper player's protocol
    (app/player.py): it rests on a token after each step and asks for the next window when fewer than 16
    tokens of frames are left ahead, as app/player/player.js does."""

    def __init__(self, ws, query: str):
        self.ws, self.query, self.page_hash = ws, query, ""
        self.player_id, self.fragment, self.seq, self.reports = None, "", 0, 0
        self.chars: dict[int, str] = {}  # token -> the byte the server says it is (isolation)
        self.have: set[int] = set()  # tokens whose frames arrived

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
        while True:
            fm = ForwardMsg()
            fm.ParseFromString(await asyncio.wait_for(self.ws.recv(), 300))
            kind = fm.WhichOneof("type")
            if kind == "new_session":
                self.page_hash = fm.new_session.page_script_hash
            elif kind == "delta" and fm.delta.WhichOneof("type") == "new_element":
                el = fm.delta.new_element
                if el.WhichOneof("type") == "bidi_component" and el.bidi_component.component_name == "nested_player":
                    self.player_id, self.fragment = el.bidi_component.id, fm.delta.fragment_id
                    self.absorb(json.loads(el.bidi_component.json))
            elif kind == "script_finished":
                return time.perf_counter() - t0

    def absorb(self, data: dict) -> None:
        self.seq = data["cmd"]["seq"]
        for k, row in enumerate(data["scalars"]):
            self.chars[data["scalars_from"] + k] = row["c"]
        self.have.update(range(data["frames_from"], data["frames_from"] + len(data["frames"])))

    async def rest_on(self, index: int) -> float:
        """Step to `index` and report it (with a window request when the lookahead runs short)."""
        missing = next((i for i in range(index, index + 16) if i not in self.have), None)
        self.reports += 1
        view = {"rid": f"bench-{self.reports}", "index": index, "playing": False, "seq": self.seq,
                "need": None if missing is None else {"start": missing // 32 * 32, "nonce": self.reports}}  # fmt: skip
        state = WidgetState(id=self.player_id, json_value=json.dumps({"view": view}))
        return await self.run([state], self.fragment)


async def one_session(url: str, i: int, steps: int, think: float, out: dict) -> None:
    text = session_text(i)
    query = f"stepper_source=Type+or+paste&stepper_typed_z={encode_link_text(text)}"
    async with websockets.connect(url.replace("http", "ws") + "/_stcore/stream", subprotocols=["streamlit"],
                                  max_size=None) as ws:  # fmt: skip
        client = Client(ws, query)
        await client.run()
        out["opened"] += 1
        if out["opened"] == out["sessions"]:
            out["all_open"].set()
        await out["all_open"].wait()  # the room steps once every tab is open (opening is measured apart)
        rnd = random.Random(1000 + i)
        for k in range(1, steps + 1):
            await asyncio.sleep(think * rnd.uniform(0.5, 1.5))
            out["latency"].append(await client.rest_on(k))
            if client.chars.get(k) != text.encode()[k : k + 1].decode().replace(" ", "␣"):
                out["mismatch"] += 1
        out["done"] += 1


async def room(url: str, n: int, steps: int, think: float, on_open=None) -> dict:
    out = {"latency": [], "mismatch": 0, "done": 0, "opened": 0, "sessions": n, "all_open": asyncio.Event()}

    async def opened():
        await out["all_open"].wait()
        if on_open is not None:
            on_open()
        out["t_open"] = time.perf_counter()

    await asyncio.gather(opened(), *(one_session(url, i, steps, think, out) for i in range(n)))
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
            res = asyncio.run(room(a.url, n, a.steps, a.think))
            lat, wall = sorted(res["latency"]), time.perf_counter() - res["t_open"]
            lost = n * a.steps - len(lat)
            print(f"| {n} | {statistics.median(lat):.2f} s / {lat[int(0.9 * (len(lat) - 1))]:.2f} s | "
                  f"{len(lat) / wall:.1f} | {res['mismatch'] + lost} |", flush=True)  # fmt: skip
        return
    with serve(with_process=True) as (url, proc):
        asyncio.run(room(url, 1, 2, 0.0))  # warm: the shared read-only models load once
        base = rss_mb(proc.pid)
        print(f"server RSS after warm-up: {base:.0f} MB; each session steps {a.steps} times, think ~{a.think:g} s\n")
        print("| sessions | step latency median / p90 | steps/s | server CPU per step | cores busy | RSS open "
              "(per session) | RSS after release | isolation errors | server CPU per page open |")  # fmt: skip
        print("|---|---|---|---|---|---|---|---|---|")
        for n in map(int, a.sessions.split(",")):
            cpu0, rss0, mark = cpu_seconds(proc.pid), rss_mb(proc.pid), {}

            def opened(mark=mark) -> None:
                mark["cpu"] = cpu_seconds(proc.pid)

            res = asyncio.run(room(url, n, a.steps, a.think, on_open=opened))
            wall, cpu = time.perf_counter() - res["t_open"], cpu_seconds(proc.pid) - mark["cpu"]
            open_cpu = mark["cpu"] - cpu0
            rss_open = rss_mb(proc.pid)
            time.sleep(a.release)
            lat = sorted(res["latency"])
            p90 = lat[int(0.9 * (len(lat) - 1))]
            lost = n * a.steps - len(lat)
            print(f"| {n} | {statistics.median(lat):.2f} s / {p90:.2f} s | {len(lat) / wall:.1f} | "
                  f"{1000 * cpu / max(len(lat), 1):.0f} ms | {cpu / wall:.2f} | {rss_open:.0f} MB "
                  f"({(rss_open - rss0) / n:+.1f}) | {rss_mb(proc.pid):.0f} MB | "
                  f"{res['mismatch'] + lost} | {1000 * open_cpu / n:.0f} ms |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
