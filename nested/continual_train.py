"""Continual learning across training (the outer loop): one network trained on task A, then B, then A ...
by an optimizer whose own state is a memory of past gradients (PAPER.md §9 E5, §3.1, Algorithm 1).

Tasks are regressions from a shared input space R^d_in to R^d_out, each a random 2-layer teacher
(tanh), so the tasks interfere: fitting B moves the weights that fitted A. The learner (E5's (i)-(v),
`nested.continual_learners`: an MLP, CMS sequential / independent / nested, fast/slow weights) is trained
online (one fresh batch a step). Every `eval_every` steps the held-out loss of *every* task is measured
(the forgetting curve, E5), and every optimizer memory's norm is read (momentum, Adam's moments, M3's
fast and slow momentum: what the optimizer still carries from the last task).

    run = train_sequence("ABA", optimizer="m3", steps_per_segment=300, learner="cms-sequential:1,32,512")
    run.losses          # (n_evals, n_tasks) held-out MSE
    run.memories        # {memory name: [norm at each eval]}
    run.recovery()      # E5's time to recover and forgetting when a task returns
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from nested.continual_learners import LearnerSpec, OuterLearner
from nested.optim import OPTIMIZERS, memory_view
from nested.tasks.base import rng

MAX_STEPS = 20_000


@dataclass(frozen=True)
class Teachers:
    """n_tasks random teachers R^d_in -> R^d_out: y = W2 tanh(W1 x) (scaled so every task's y has unit
    variance), and a fixed held-out set per task."""

    n_tasks: int = 4
    d_in: int = 32
    d_out: int = 8
    hidden: int = 32
    seed: int = 0
    n_heldout: int = 256

    def __post_init__(self):
        if not 1 <= self.n_tasks <= 6:
            raise ValueError("n_tasks must be 1..6")

    @property
    def names(self) -> list[str]:
        return [chr(65 + i) for i in range(self.n_tasks)]

    def weights(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        g = rng(self.seed)
        out = {}
        for t in self.names:
            w1 = torch.randn(self.hidden, self.d_in, generator=g) * (2.0 / math.sqrt(self.d_in))
            w2 = torch.randn(self.d_out, self.hidden, generator=g)
            x = torch.randn(4096, self.d_in, generator=g)
            scale = (torch.tanh(x @ w1.T) @ w2.T).std()
            out[t] = (w1, w2 / scale)
        return out

    def target(self, w, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x @ w[0].T) @ w[1].T


@dataclass
class SequenceRun:
    optimizer: str
    lr: float
    tasks: list[str]
    segments: list[tuple[str, int, int]]  # (task, first step, end step)
    steps: list[int] = field(default_factory=list)  # where losses were measured
    losses: list[list[float]] = field(default_factory=list)  # per eval: held-out MSE per task
    memories: dict[str, list[float]] = field(default_factory=dict)  # optimizer memory -> norm per eval
    diverged_at: int | None = None
    learner: str = "mlp"
    online: list[float] = field(default_factory=list)  # per eval: mean training loss since the last eval
    n_values: int = 0  # trained values the learner stores

    def loss(self, task: str) -> np.ndarray:
        return np.array([row[self.tasks.index(task)] for row in self.losses])

    def forgetting_matrix(self) -> np.ndarray:
        """M[j, i]: held-out loss on task i at the end of segment j."""
        at = {s: i for i, s in enumerate(self.steps)}
        return np.array([self.losses[at[b]] for _, _, b in self.segments if b in at])

    def recovery(self, within: float = 0.1) -> list[dict]:
        """E5's measures each time a task returns (segment j of task t, seen before): `forgot` = its
        held-out loss when it returns minus the best it reached before; `steps` = steps into the segment
        until the loss is within `within` (10 %) of that best (None: never, in this segment)."""
        out, x = [], np.array(self.steps)
        for j, (t, a, b) in enumerate(self.segments):
            if t not in [s[0] for s in self.segments[:j]]:
                continue
            curve = self.loss(t)
            best = float(curve[x <= a].min())
            inside = (x > a) & (x <= b)
            hit = np.nonzero(inside & (curve <= best * (1 + within)))[0]
            start = float(curve[x <= a][-1])
            out.append({"segment": j, "task": t, "best_before": best, "forgot": start - best,
                        "steps": int(x[hit[0]] - a) if len(hit) else None})  # fmt: skip
        return out

    def mean_online_loss(self) -> float:
        """E5's average online loss: the training loss over the whole run."""
        return float(np.mean(self.online)) if self.online else float("nan")

    def to_dict(self) -> dict:
        return {"optimizer": self.optimizer, "lr": self.lr, "tasks": self.tasks, "segments": [list(s) for s in self.segments],
                "steps": self.steps, "losses": self.losses, "memories": self.memories, "diverged_at": self.diverged_at,
                "learner": self.learner, "online": self.online, "n_values": self.n_values}  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict) -> SequenceRun:
        return cls(**{**d, "segments": [tuple(s) for s in d["segments"]]})


def parse_schedule(schedule: str, tasks: list[str]) -> str:
    s = "".join(schedule.split()).upper()
    if not s:
        raise ValueError("the schedule is empty: type task letters such as ABA")
    bad = sorted(set(s) - set(tasks))
    if bad:
        raise ValueError(f"{', '.join(bad)} is not a task here: use {', '.join(tasks)}")
    if len(s) > 12:
        raise ValueError("a schedule has at most 12 segments")
    return s


def train_sequence(schedule: str = "ABA", optimizer: str = "adam", lr: float = 0.01, steps_per_segment: int = 300,
                   batch: int = 32, eval_every: int = 10, teachers: Teachers | None = None, seed: int = 0,
                   reset_state: bool = False, learner: str | LearnerSpec = "mlp") -> SequenceRun:  # fmt: skip
    """Train a learner on the schedule's tasks in turn (online: a fresh batch each step). `reset_state`
    clears the optimizer's memories at each task boundary (§4.5 argues dropping them hurts)."""
    teachers = teachers or Teachers()
    spec = learner if isinstance(learner, LearnerSpec) else LearnerSpec.parse(learner)
    schedule = parse_schedule(schedule, teachers.names)
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
    if steps_per_segment < 1 or len(schedule) * steps_per_segment > MAX_STEPS:
        raise ValueError(f"a run trains at most {MAX_STEPS:,} steps")
    if not (math.isfinite(lr) and 0 < lr <= 10):
        raise ValueError("the learning rate must be in (0, 10]")
    w = teachers.weights()
    g = rng(teachers.seed + 10_007 * seed + 1)
    heldout = {t: (x := torch.randn(teachers.n_heldout, teachers.d_in, generator=g), teachers.target(w[t], x))
               for t in teachers.names}  # fmt: skip
    model = OuterLearner(spec, teachers.d_in, teachers.d_out, seed=seed)
    net, opts = model.net, model.optimizers(OPTIMIZERS[optimizer], lr)
    segs = [(t, i * steps_per_segment, (i + 1) * steps_per_segment) for i, t in enumerate(schedule)]
    run = SequenceRun(optimizer, lr, teachers.names, segs, learner=str(spec), n_values=model.n_values)
    since: list[float] = []

    def measure(step: int) -> None:
        with torch.no_grad():
            run.losses.append([float(((net(x) - y) ** 2).mean()) for x, y in heldout.values()])
        run.steps.append(step)
        if since:
            run.online.append(sum(since) / len(since))
            since.clear()
        for group, opt in zip(model.groups, opts, strict=True):
            for mem in memory_view(opt):
                norm = math.sqrt(sum(float(t.float().pow(2).sum()) for t in mem.tensors)) if mem.tensors else 0.0
                name = mem.name if len(opts) == 1 else f"{group.name}: {mem.name}"
                run.memories.setdefault(name, []).append(norm)

    measure(0)
    for task, a, b in segs:
        if reset_state and a > 0:
            for opt in opts:
                opt.state.clear()
        for step in range(a, b):
            x = torch.randn(batch, teachers.d_in, generator=g)
            loss = ((net(x) - teachers.target(w[task], x)) ** 2).mean()
            loss.backward()  # gradients add up in .grad until their group steps (Eq. 71's sum)
            model.step(opts, step)
            since.append(float(loss.detach()))
            if not math.isfinite(since[-1]):
                run.diverged_at = step
                return run
            if (step + 1) % eval_every == 0 or step + 1 == b:
                measure(step + 1)
    return run
