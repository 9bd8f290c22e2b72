"""Continual learning in context: several models stream the same task sequence, and probes that read
each model's state without changing it score *every* task at every point (PAPER.md §8.2, §9 E5/E6).

    lab = ContinualLab(SuccessorLanguages(n_tasks=4), [Learner("Hope", hope), Learner("SWA", swa)], seed=0)
    lab.feed("A", 128); lab.feed("B", 128); lab.feed("A", 128)
    lab.curves["Hope"]          # (n_probes, n_tasks) accuracy from the state at each probe position
    lab.forgetting_matrix("Hope")   # score on task i at the end of segment j

The stream is a pure function of (seed, the list of (task, length) segments), so a URL can restore it.
Probes go through `NestedLM.probe` (no CMS level learns, the probe's own writes are dropped) on
`repeat_state` copies of the state: one batched call per model scores every task. For Hope, a probe can
also read the state with one level reset to its learned initial value - "what if this level forgot now".
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from nested.level_state import level_change, reset_level
from nested.schedule import MAX_TOKENS, TEXT_TASK, Schedule
from nested.state import StreamState, map_tensors, probe_view, repeat_state
from nested.tasks.base import rng
from nested.tasks.languages import SuccessorLanguages

BLOCK = 256  # a segment is generated in blocks of this many symbols (each seeded by its position)


@dataclass
class Learner:
    """One model in the lab with its own stream state. `freeze` is a nested.Freeze spec for its run, applied
    from stream position `freeze_at` on (0: from the start; later: the level learns until then, then stops)."""

    name: str
    model: torch.nn.Module
    freeze: str = ""
    freeze_at: int = 0
    resets: bool = False  # summaries add the probe with each level reset (Hope: "which level carries which task")
    state: StreamState | None = None
    last_pred: int | None = None  # the prediction for the stream's next token
    measured: StreamState | None = None  # the state at the last probe (level changes are measured from it)

    def __post_init__(self):
        self.model.eval()
        if self.freeze_at < 0:
            raise ValueError(f"a level is frozen from a stream position >= 0, got {self.freeze_at}")
        self.state = self.model.init_state(1, freeze=self.freeze if self.freeze_at == 0 else None)
        self.fresh = self.model.init_state(1)

    def freezes_at(self, pos: int) -> bool:
        return bool(self.freeze) and self.freeze_at == pos > 0


@dataclass
class ProbeResult:
    accuracy: dict[str, float]  # task -> accuracy of its fragment probes (argmax over its alphabet)
    loss: dict[str, float]  # task -> mean nats of the right successor (full byte vocabulary)


def score_queries(logits: Tensor, task: SuccessorLanguages, answers: Tensor, tasks: list[str]) -> ProbeResult:
    """Score the (n_tasks * alphabet, context, V) logits of `probe_tokens` task by task (the last position)
    against its `answers` (n_tasks * alphabet,)."""
    acc, loss, k = {}, {}, task.alphabet
    logp = torch.log_softmax(logits[:, -1].float(), -1)
    for j, t in enumerate(tasks):
        lp, ans = logp[j * k : (j + 1) * k], answers[j * k : (j + 1) * k]
        allowed = torch.tensor(task.restrict(t))
        pred = allowed[lp[:, allowed].argmax(-1)]
        acc[t] = float((pred == ans).float().mean())
        loss[t] = float(-lp.gather(1, ans[:, None]).mean())
    return ProbeResult(acc, loss)


def probe_tokens(task: SuccessorLanguages, rules: dict, tasks: list[str]) -> tuple[Tensor, Tensor]:
    """Every task's probe fragments, stacked (n_tasks * alphabet, context), and their answers."""
    frags, answers = zip(*(task.queries(t, rules) for t in tasks), strict=True)
    return torch.cat(frags), torch.cat(answers)


@dataclass
class ContinualLab:
    """The stream, the learners' states and everything measured so far. Mutable on purpose: it is one
    session's live run (app/continual_ui.py keeps one per browser session)."""

    task: SuccessorLanguages
    learners: list[Learner]
    seed: int = 0
    probe_every: int = 16
    text: str = ""  # the user's text, streamed as segments of task "T" (bytes, repeated to length)
    segments: list[tuple[str, int, int]] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    curves: dict = field(default_factory=dict)  # learner -> list of {task: accuracy}
    losses: dict = field(default_factory=dict)  # learner -> list of {task: nats}
    changes: dict = field(default_factory=dict)  # learner -> list of {level: change since last probe}
    online: dict = field(default_factory=dict)  # learner -> list of in-stream hit (1/0) per token
    tokens: list[int] = field(default_factory=list)

    def __post_init__(self):
        if len({lr.name for lr in self.learners}) != len(self.learners):
            raise ValueError("learners need distinct names")
        self.rules = self.task.rules(rng(self.seed))
        self._generated: dict[tuple[int, str], str] = {}
        self._reset_cache: dict = {}
        self.tasks = self.task.task_names
        self._probe, self._answers = probe_tokens(self.task, self.rules, self.tasks)
        for lr in self.learners:
            self.curves[lr.name], self.losses[lr.name], self.changes[lr.name], self.online[lr.name] = [], [], [], []
        self._measure()

    @property
    def pos(self) -> int:
        return len(self.tokens)

    # -- the stream ------------------------------------------------------------------------------
    def _segment_text(self, task: str, index: int, n: int) -> list[int]:
        """The first n tokens of segment `index`: a pure function of (seed, index, task) whose prefixes
        agree, so a schedule replays and a segment continued in steps equals one fed at once."""
        if task == TEXT_TASK:
            data = self.text.encode("utf-8", errors="replace") or b" "
            return list((data * (n // len(data) + 1))[:n])
        key = (index, task)
        have = self._generated.get(key, "")
        while len(have) < n:
            g = rng(self.seed * 1_000_003 + 7919 * index + 131 * ord(task) + len(have) // BLOCK)
            have += self.task.segment(task, self.rules, BLOCK, g, after=have[-1] if have else None)
        self._generated[key] = have
        return list(have[:n].encode())

    def feed(self, task: str, n: int, on_probe=None) -> None:
        """Stream n tokens of `task` as a new segment (or continue the current one if it is the same
        task), probing every `probe_every` tokens and at the end. `on_probe(done, n)` reports progress."""
        if task not in self.tasks and task != TEXT_TASK:
            raise ValueError(f"{task!r} is not a task here: use {', '.join(self.tasks)}")
        if task == TEXT_TASK and not self.text:
            raise ValueError("there is no text of yours to feed: type or paste some first")
        n = int(n)
        if n < 1 or self.pos + n > MAX_TOKENS:
            raise ValueError(f"this lab streams at most {MAX_TOKENS:,} tokens ({MAX_TOKENS - self.pos:,} left)")
        if self.segments and self.segments[-1][0] == task and self.segments[-1][2] == self.pos:
            t, a, b = self.segments.pop()
            seg_tokens = self._segment_text(task, len(self.segments), b - a + n)[b - a :]
            self.segments.append((t, a, b + n))
        else:
            seg_tokens = self._segment_text(task, len(self.segments), n)
            self.segments.append((task, self.pos, self.pos + n))
        done = 0
        while done < n:
            k = min(self.probe_every - self.pos % self.probe_every, n - done, self._to_next_freeze())
            self._advance(seg_tokens[done : done + k])
            done += k
            if self.pos % self.probe_every == 0 or done == n:
                self._measure()
            if on_probe is not None:
                on_probe(done, n)

    def replay(self, schedule: Schedule) -> None:
        for t, n in schedule.segments:
            self.feed(t, n)

    def _to_next_freeze(self) -> int:
        """Tokens until a learner's level is frozen mid-stream (pieces stop there), or a large number."""
        ahead = [lr.freeze_at - self.pos for lr in self.learners if lr.freeze and lr.freeze_at > self.pos]
        return min(ahead, default=MAX_TOKENS)

    @torch.no_grad()
    def _advance(self, toks: list[int]) -> None:
        x = torch.tensor([toks], dtype=torch.long)
        for lr in self.learners:
            if lr.freezes_at(self.pos):
                lr.state = lr.model.with_freeze(lr.state, lr.freeze)
            res = lr.model.run(x.to(lr.model.device), lr.state)
            pred = res.logits[0].argmax(-1).cpu().tolist()
            # in-stream hit: the prediction made *before* each token (the first one's came with the last piece)
            hits = self.online[lr.name]
            if lr.last_pred is not None:
                hits.append(int(lr.last_pred == toks[0]))
            hits += [int(p == t) for p, t in zip(pred[:-1], toks[1:], strict=True)]
            lr.last_pred = pred[-1]
            lr.state = res.state
        self.tokens += toks

    # -- probes ----------------------------------------------------------------------------------
    @torch.no_grad()
    def _measure(self) -> None:
        self.positions.append(self.pos)
        for lr in self.learners:
            res = self._probe_state(lr.model, probe_view(lr.state))
            self.curves[lr.name].append(res.accuracy)
            self.losses[lr.name].append(res.loss)
            self.changes[lr.name].append(
                level_change(lr.model, lr.measured, lr.state) if lr.measured is not None else {}
            )
            lr.measured = lr.state

    def _probe_state(self, model, view: StreamState) -> ProbeResult:
        """Every task's probe read from one batch-1 state (a probe_view), in one batched call."""
        state = repeat_state(view, self._probe.shape[0])
        return score_queries(
            model.probe(self._probe.to(model.device), state).cpu(), self.task, self._answers, self.tasks
        )

    @torch.no_grad()
    def reset_probe(self, learner: str) -> dict[str, dict[str, float]]:
        """Now, for each level of `learner`: every task's probe accuracy with that level reset to its learned
        initial value. Computed when asked (a page asks once per redraw), cached for the position."""
        pos, value = self._reset_cache.get(learner, (None, None))
        if pos != self.pos:
            lr = next(x for x in self.learners if x.name == learner)
            view = probe_view(lr.state)
            out = {name: self._probe_state(lr.model, reset_level(lr.model, view, lr.fresh, name)).accuracy
                   for name in lr.model.freeze_options()}  # fmt: skip
            self._reset_cache[learner] = (self.pos, out)
            value = out
        return value

    def curve(self, learner: str, task: str) -> np.ndarray:
        return np.array([r[task] for r in self.curves[learner]])

    def forgetting_matrix(self, learner: str) -> np.ndarray:
        """M[j, i] = accuracy on task i from the state at the end of segment j (text segments included)."""
        at = {p: i for i, p in enumerate(self.positions)}
        rows = [self.curves[learner][at[b]] for _, _, b in self.segments]
        return np.array([[r[t] for t in self.tasks] for r in rows])

    def segment_changes(self, learner: str) -> list[dict[str, float]]:
        """Per segment, how far each level moved while it streamed (root of the summed squared changes)."""
        out = []
        for _, a, b in self.segments:
            acc: dict[str, float] = {}
            for p, ch in zip(self.positions, self.changes[learner], strict=True):
                if a < p <= b:
                    for k, v in ch.items():
                        acc[k] = acc.get(k, 0.0) + v * v
            out.append({k: math.sqrt(v) for k, v in acc.items()})
        return out

    def online_accuracy(self, learner: str, a: int, b: int) -> float:
        """In-stream next-token accuracy over stream tokens [a, b) (prediction of token t from t-1)."""
        hits = self.online[learner][max(a - 1, 0) : max(b - 1, 0)]
        return float(np.mean(hits)) if hits else float("nan")

    # -- what a page draws and a preset ships ----------------------------------------------------
    def summary(self, resets: bool | list[str] = True) -> dict:
        """Everything measured, as plain JSON-able data (app figures take this, presets ship it). `resets`:
        add the reset probes now for the learners that have them (True), only the named ones, or none."""
        models = {}
        for lr in self.learners:
            n = lr.name
            models[n] = {
                "freeze": lr.freeze,
                "freeze_at": lr.freeze_at if lr.freeze else None,
                "curves": [[r[t] for t in self.tasks] for r in self.curves[n]],
                "losses": [[r[t] for t in self.tasks] for r in self.losses[n]],
                "resets": {lv: [[r[t] for t in self.tasks]] for lv, r in self.reset_probe(n).items()}
                if lr.resets and (resets is True or (resets and n in resets)) else {},
                "matrix": self.forgetting_matrix(n).tolist() if self.segments else [],
                "segment_changes": self.segment_changes(n),
                "online": [self.online_accuracy(n, a, b) for _, a, b in self.segments],
            }  # fmt: skip
        return {"tasks": list(self.tasks), "chance": self.task.probe_chance(), "seed": self.seed, "pos": self.pos,
                "segments": [list(s) for s in self.segments], "positions": list(self.positions),
                "models": models}  # fmt: skip

    def nbytes(self) -> int:
        """Bytes of tensor storage this lab holds (every learner's state; shared storages counted once)."""
        seen: dict[int, int] = {}

        def count(t: Tensor) -> Tensor:
            st = t.untyped_storage()
            seen[st.data_ptr()] = st.nbytes()
            return t

        for lr in self.learners:
            map_tensors(count, (lr.state, lr.measured))
        return sum(seen.values())

    def fork(self) -> ContinualLab:
        """An independent copy that shares the (immutable) tensors: states are replaced, never written in
        place, so a cached run can seed many sessions' live runs."""
        other = copy.copy(self)
        other.learners = [copy.copy(lr) for lr in self.learners]
        other.segments, other.positions, other.tokens = list(self.segments), list(self.positions), list(self.tokens)
        for name in ("curves", "losses", "changes", "online"):
            setattr(other, name, {k: list(v) for k, v in getattr(self, name).items()})
        other._reset_cache = dict(self._reset_cache)
        other._generated = dict(self._generated)
        return other
