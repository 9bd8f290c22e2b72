"""Training for the app's Train page, off the page's thread: one `nested.train.train` run per job in a
background thread (torch releases the GIL), bounded per run (steps and seconds, by device), one job at a
time per session and at most MAX_CONCURRENT in the process (a further session is told to wait). Each
session writes its runs to its own temporary directory, removed when the session's Workspace is dropped.
No Streamlit here: pytest drives it directly.
"""

from __future__ import annotations

import io
import json
import math
import shutil
import statistics
import tempfile
import threading
import time
import weakref
import zipfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import NamedTuple

import nested
from nested.tasks import make_task
from nested.train import TrainConfig, train


@dataclass(frozen=True)
class Caps:
    steps: int  # the most steps a run may have
    seconds: float  # each start or resume trains at most this long, then stops (its last checkpoint kept)


CAPS = {"cpu": Caps(400, 120.0), "cuda": Caps(2000, 300.0), "mps": Caps(1000, 180.0)}
MAX_CONCURRENT = 2  # trainings at once in this process, over all sessions
DIVERGED_LOSS = 50.0  # nats: a loss this far above a uniform guess (5.5) is a diverged run, finite or not
MAX_LR = 1e6
_SLOTS = threading.BoundedSemaphore(MAX_CONCURRENT)


def caps_for(device: str) -> Caps:
    return CAPS.get(str(device).split(":")[0], CAPS["cpu"])


class Busy(RuntimeError):
    """Every training slot of this process is taken (by other sessions): try again shortly."""


def tokens_per_step(cfg: TrainConfig) -> int:
    """batch x sequence length, the sequence length read from one sample of the task."""
    return cfg.batch_size * int(make_task(cfg.task, **cfg.task_args).sample(1, 0).inputs.shape[1])


class Timing(NamedTuple):
    setup_s: float  # building the model, optimizer and task, and the first (warm-up) step beyond a step
    step_s: float  # one training step


def measure_step_seconds(cfg: TrainConfig, n: int = 5) -> Timing:
    """What `cfg` costs on this device now: `n` real steps of the same function (learning rate 0: the same
    work, and a timing never diverges) in a throwaway directory. The step time is the median of the steps
    after the first; the setup is the time to the first step's end less one step."""
    n = max(n, 2)
    stamps: list[float] = []
    with tempfile.TemporaryDirectory(prefix="nested-time-") as tmp:
        probe = replace(cfg, lr=0.0, steps=n + 1, eval_every=0, ckpt_every=0, out_dir=tmp)
        t0 = time.perf_counter()
        train(probe, progress=False, should_stop=lambda: len(stamps) >= n,
              on_step=lambda _r: stamps.append(time.perf_counter()))  # fmt: skip
    step = statistics.median(b - a for a, b in zip(stamps, stamps[1:], strict=False))
    return Timing(max(stamps[0] - t0 - step, 0.0), step)


_TIMES: dict[str, Timing] = {}  # process-wide: a timing is about this device, not a session's


def timing_key(cfg: TrainConfig) -> str:
    """What a step's cost depends on (not the step count, rate, seed or the text's content)."""
    d = asdict(cfg)
    for k in ("steps", "lr", "seed", "out_dir", "eval_every", "ckpt_every"):
        d.pop(k)
    d["task_args"] = {k: v for k, v in d["task_args"].items() if k != "text"}
    return json.dumps(d, sort_keys=True, default=str)


def cached_timing(cfg: TrainConfig) -> Timing:
    key = timing_key(cfg)
    if key not in _TIMES:
        if len(_TIMES) >= 64:
            _TIMES.pop(next(iter(_TIMES)))
        _TIMES[key] = measure_step_seconds(cfg)
    return _TIMES[key]


@dataclass(frozen=True)
class Estimate:
    steps: int
    tokens: int
    timing: Timing
    seconds: float  # expected wall time of the whole run (setup + steps; before the time cap)
    capped: bool  # the time cap ends the run before its last step

    def line(self, cap: Caps) -> str:
        runs = f"about {self.seconds:.0f} s" + (
            f": over the {cap.seconds:.0f} s cap, it stops early" if self.capped else ""
        )
        return (f"{self.steps} steps x {self.tokens // self.steps:,} tokens = **{self.tokens:,} tokens**; "
                f"{self.timing.step_s * 1000:.0f} ms a step and {self.timing.setup_s:.1f} s to set up, measured on "
                f"this device, so {runs}.")  # fmt: skip


def estimate(cfg: TrainConfig, cap: Caps, timer=cached_timing) -> Estimate:
    """The cost of `cfg` before it starts: tokens = steps x batch x sequence length; time = setup + steps
    x one step, as measured by `timer(cfg)` (injectable; a Timing)."""
    timing = Timing(*timer(cfg))
    seconds = timing.setup_s + timing.step_s * cfg.steps
    return Estimate(cfg.steps, cfg.steps * tokens_per_step(cfg), timing, seconds, seconds > cap.seconds)


class Workspace:
    """A session's training directory (tempfile). Dropping the Workspace (the session ends or is replaced)
    stops its job and removes the directory."""

    def __init__(self):
        self.root = Path(tempfile.mkdtemp(prefix="nested-train-"))
        self.closed = threading.Event()
        self.runs = 0
        self._jobs: weakref.WeakSet = weakref.WeakSet()
        self._finalizer = weakref.finalize(self, _close, self.root, self.closed, self._jobs)

    def new_run_dir(self) -> Path:
        self.runs += 1
        return self.root / f"run-{self.runs}"

    def prune(self, keep: str | Path) -> None:
        """Remove every run but `keep` (one run on disk: the results live in memory)."""
        for old in self.root.glob("run-*"):
            if old != Path(keep):
                shutil.rmtree(old, ignore_errors=True)

    def track(self, job: TrainJob) -> None:
        self._jobs.add(job)

    def close(self) -> None:
        self._finalizer()


def _close(root: Path, closed: threading.Event, jobs) -> None:
    closed.set()
    for job in list(jobs):
        job.stop()
    shutil.rmtree(root, ignore_errors=True)


class TrainJob:
    """One start or resume of a run, in a thread. Read `status`, `history` (step, loss) and `error` from any
    thread; `result` (the summary with the trained model) once `status` is "done" or "stopped"."""

    def __init__(self, cfg: TrainConfig, cap: Caps, resume: bool = False, workspace: Workspace | None = None,
                 label: str = ""):  # fmt: skip
        if cfg.steps > cap.steps:
            raise ValueError(f"{cfg.steps} steps is over this device's cap of {cap.steps}")
        if resume and not (Path(cfg.out_dir) / "last" / "trainer.json").is_file():
            raise ValueError(f"there is no stopped run in {cfg.out_dir} to resume")
        self.cfg, self.cap, self.resume, self.label = cfg, cap, resume, label  # label: what it trains on, in words
        self.collected = False  # the page has taken the result
        last = Path(cfg.out_dir) / "last" / "trainer.json"
        self.start_step = json.loads(last.read_text())["step"] if resume else 0
        self.status = "new"  # new -> running -> done | stopped | diverged | failed
        self.stop_reason = ""
        self.history: list[tuple[int, float]] = []
        self.error: str | None = None
        self.result: dict | None = None
        self.started = 0.0
        self.seconds = 0.0
        self._stop = threading.Event()
        self._closed = workspace.closed if workspace is not None else threading.Event()
        self._thread = threading.Thread(target=self._run, name="nested-train", daemon=True)
        if workspace is not None:
            workspace.track(self)

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def step(self) -> int:
        """The run's step count now (a resumed run starts at its checkpoint's step)."""
        return self.history[-1][0] if self.history else self.start_step

    def start(self) -> TrainJob:
        if not _SLOTS.acquire(blocking=False):
            raise Busy(f"{MAX_CONCURRENT} trainings are running for other visitors; try again in a minute")
        self.status, self.started = "running", time.perf_counter()
        self._thread.start()
        return self

    def stop(self, reason: str = "stopped") -> None:
        if not self._stop.is_set():
            self.stop_reason = reason
            self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _should_stop(self) -> bool:
        if not self._stop.is_set() and time.perf_counter() - self.started > self.cap.seconds:
            self.stop(f"the {self.cap.seconds:.0f} s time cap")
        return self._stop.is_set()

    def _on_step(self, rec: dict) -> None:
        if rec["loss"] > DIVERGED_LOSS:
            raise FloatingPointError(f"the loss reached {rec['loss']:.3g} nats at step {rec['step']}")
        self.history.append((rec["step"], rec["loss"]))

    def _run(self) -> None:
        status = "failed"
        try:
            summary = train(self.cfg, resume=self.resume, progress=False, should_stop=self._should_stop,
                            on_step=self._on_step)  # fmt: skip
            model = summary["model"].cpu().eval()
            for p in model.parameters():
                p.requires_grad_(False)
            self.result = summary | {"model": model, "config": asdict(self.cfg)}
            status = "stopped" if summary["stopped"] else "done"
        except FloatingPointError as exc:  # nested.NonFiniteMemoryError is one too
            self.error, status = f"the run diverged ({exc})", "diverged"
        except Exception as exc:  # noqa: BLE001 - shown on the page, never raised into the app
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.seconds = time.perf_counter() - self.started
            _SLOTS.release()
            if self._closed.is_set():  # the session went away while this ran
                shutil.rmtree(self.cfg.out_dir, ignore_errors=True)
            self.status = status  # last: whoever sees the run ended sees all of it


def checkpoint_zip(model: nested.NestedLM, meta: dict) -> bytes:
    """The model as a zip of one nested checkpoint directory (model.safetensors + config.json, the format
    `nested.load` validates), named after nothing the user typed."""
    with tempfile.TemporaryDirectory(prefix="nested-dl-") as tmp:
        path = nested.save(model, Path(tmp) / "checkpoint", meta=meta)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for f in sorted(path.iterdir()):
                zf.write(f, f"checkpoint/{f.name}")
    return buf.getvalue()


def parse_lr(raw: str) -> float:
    """A learning rate typed by the user: a positive finite number (absurd ones are allowed: the run
    diverges and says so)."""
    try:
        lr = float(raw.strip())
    except ValueError:
        raise ValueError(f"the learning rate {raw.strip()[:20]!r} is not a number (try 3e-3)") from None
    if not math.isfinite(lr) or lr <= 0 or lr > MAX_LR:
        raise ValueError(f"the learning rate must be a finite number in (0, {MAX_LR:g}], not {raw.strip()[:20]}")
    return lr


# -- what the page offers --------------------------------------------------------------------------

CORPUS = "Python docs (the offline pydoc corpus)"
TASK_CHOICES: dict[str, tuple[str, dict]] = {
    "associative recall": ("recall", {}),
    "formal language (parity)": ("formal", {}),
    "a new language in context": ("new-language", {}),
    "successor languages": ("languages", {"n_tasks": 4, "segment_len": 64, "n_segments": 2}),
}
OPTIMIZERS = ["adamw", "adam", "sgd", "muon", "m3", "delta-momentum"]
MAX_TEXT = 100_000  # bytes of a user's text a run trains on (the rest is cut, with a note)


def model_args(model: str, d_model: int, n_layers: int) -> dict:
    """A fresh model's size (Hope's CMS periods as in the shipped recipes)."""
    extra = {"cms_periods": [16, 64]} if model.startswith("hope") else {}
    return {"d_model": d_model, "n_layers": n_layers, **extra}


def data_for(source: str, pick: str, text: str, seq_len: int) -> tuple[str, dict]:
    """(task, task_args) for a shipped text (the corpus or a sample), a task, or the user's text;
    ValueError with a clear message when the data cannot be used."""
    from app.samples import sample_texts

    if source == "task":
        if pick not in TASK_CHOICES:
            raise ValueError(f"unknown task {pick!r}")
        task, args = TASK_CHOICES[pick]
    elif source == "corpus":
        task, args = (
            "text",
            {"seq_len": seq_len} if pick == CORPUS else {"seq_len": seq_len, "text": sample_texts()[pick]},
        )
    else:
        task, args = "text", {"seq_len": seq_len, "text": text}
    make_task(task, **args)  # validates (an empty or too short text says so)
    return task, dict(args)
