"""Optimizers race on a real network, step by step, with their memories recorded (PAPER.md §1.3, §7).

    race = Race(RaceConfig(task="digits", optimizers=("adamw", "muon", "m3")))
    race.advance(10)              # ten steps of every optimizer, each on the same batches
    race.runners["m3"].history    # per step: training loss, step time; every eval_every steps: test scores
    race.runners["m3"].layers()   # per layer, the norm of each of the optimizer's memories now
    race.runners["muon"].spectrum()  # singular values of the momentum before and after Newton-Schulz

Every network starts from the same weights (one seed) and sees the same batch at every step, so the only
difference between two curves is the optimizer. The optimizers are nested.train.make_optimizer's, with
Muon and M3 scoped as the paper uses them (hidden matrices through the rule, the rest through AdamW:
nested.optim.scope). Learning rates default to each one's best on the task (BEST_LR, measured by
bench/optimizer_grid.py; docs/RESULTS.md). A runner whose loss blows up (not finite, or over BLOWUP times its
first loss) is stopped and says where; the others go on.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from nested.optim.newton_schulz import newton_schulz
from nested.optim.scope import through_rule
from nested.race_tasks import make_problem
from nested.train import make_optimizer

LABELS = {
    "adamw": "AdamW",
    "sgd": "SGD + momentum",
    "muon": "Muon",
    "m3": "M3",
    "m3-paper": "M3 (Algorithm 1, literal)",
    "delta-momentum": "delta momentum",
}
# The best learning rate of each optimizer per task: bench/optimizer_grid.py, 3 seeds (docs/RESULTS.md).
BEST_LR = {
    "digits": {"adamw": 0.01, "sgd": 0.3, "muon": 0.03, "m3": 0.01, "m3-paper": 1e-3, "delta-momentum": 0.1},
    "bytes": {"adamw": 3e-3, "sgd": 0.1, "muon": 0.03, "m3": 0.01, "m3-paper": 0.01, "delta-momentum": 0.1},
}
# Muon and M3 train what is outside their scope with AdamW at a tenth of their rate (Muon's convention)
OPT_ARGS = {name: (lambda lr: {"adamw_lr": lr / 10}) for name in ("muon", "m3", "m3-paper")}
MAX_STEPS = 2000  # a race is bounded: its history is a few floats per step
BLOWUP = 10.0  # a loss over 10x the first one (or not finite) has diverged: the runner stops there
# the state buffers that are memories, by optimizer (nested.optim.memory_view describes each)
MEMORY_KEYS = {
    "adamw": ("exp_avg", "exp_avg_sq"),
    "sgd": ("momentum_buffer",),
    "muon": ("momentum_buffer",),
    "m3": ("M1", "V", "M2"),
    "m3-paper": ("M1", "V", "M2"),
    "delta-momentum": ("m",),
}
MEMORY_LABELS = {"exp_avg": "first moment", "exp_avg_sq": "second moment", "momentum_buffer": "momentum",
                 "M1": "fast momentum M1", "V": "second moment V", "M2": "slow momentum M2", "m": "momentum"}  # fmt: skip


@dataclass
class RaceConfig:
    task: str = "digits"
    optimizers: tuple[str, ...] = ("adamw", "muon", "m3")
    lrs: dict[str, float] = field(default_factory=dict)  # missing: BEST_LR[task]
    seed: int = 0
    eval_every: int = 10

    def lr(self, name: str) -> float:
        return float(self.lrs[name] if name in self.lrs else BEST_LR[self.task][name])

    def __post_init__(self):
        self.optimizers = tuple(self.optimizers)
        for name in self.optimizers:
            if name not in LABELS:
                raise ValueError(f"unknown optimizer {name!r}; choose from {', '.join(LABELS)}")
            lr = self.lrs.get(name, 1.0)
            if not (isinstance(lr, int | float) and math.isfinite(lr) and 0 < lr <= 100):
                raise ValueError(f"the learning rate of {LABELS[name]} must be a number in (0, 100], got {lr!r}")
        if len(set(self.optimizers)) != len(self.optimizers):
            raise ValueError("each optimizer can race once")
        if not self.optimizers:
            raise ValueError("pick at least one optimizer")


class Runner:
    """One optimizer training one copy of the network."""

    def __init__(self, name: str, problem, cfg: RaceConfig, **opt_args):
        self.name, self.problem, self.seed, self.lr = name, problem, cfg.seed, cfg.lr(name)
        self.model = problem.build(cfg.seed)
        opt_args = OPT_ARGS.get(name, lambda lr: {})(self.lr) | opt_args
        self.opt = make_optimizer(name, self.model.named_parameters(), self.lr, **opt_args)
        # the matrix whose update spectrum is drawn: the first hidden matrix (Muon's and M3's scope)
        self.watched_name, self.watched = next((n, p) for n, p in self.model.named_parameters()
                                               if through_rule(n, p, "hidden"))  # fmt: skip
        self.last_update = torch.zeros_like(self.watched)
        self.history: list[dict] = []
        self.diverged: str | None = None
        self.memory_norms: dict[str, list[float]] = {k: [] for k in MEMORY_KEYS[name]}

    @property
    def steps(self) -> int:
        return len(self.history)

    def step(self, eval_every: int) -> None:
        if self.diverged:
            return
        step = self.steps
        batch = self.problem.batch(self.seed, step)
        t0 = time.perf_counter()
        self.opt.zero_grad(set_to_none=True)
        loss = self.problem.loss(self.model, batch)
        value = float(loss.detach())
        start = self.history[0]["loss"] if self.history else value
        if not math.isfinite(value) or value > BLOWUP * max(start, 1.0):
            self.diverged = (f"{LABELS[self.name]} diverged at step {step} (loss {value:.3g}, it started at "
                             f"{start:.3g}) with learning rate {self.lr:g}: try a smaller one")  # fmt: skip
            return
        loss.backward()
        before = self.watched.detach().clone()
        t1 = time.perf_counter()
        self.opt.step()
        t2 = time.perf_counter()
        self.last_update = self.watched.detach() - before
        rec = {"step": step + 1, "loss": value, "step_ms": 1e3 * (t2 - t0), "opt_ms": 1e3 * (t2 - t1)}
        if (step + 1) % eval_every == 0:
            self.model.eval()
            rec |= {f"test_{k}": v for k, v in self.problem.evaluate(self.model).items()}
            self.model.train()
        self.history.append(rec)
        for key, norms in self.memory_norms.items():
            norms.append(math.sqrt(sum(float(t.pow(2).sum()) for _, t in self._buffers(key))))

    def _buffers(self, key: str):
        """(parameter name, buffer) for every parameter whose state holds `key`."""
        for name, p in self.model.named_parameters():
            st = self.opt.state.get(p, {})
            if torch.is_tensor(st.get(key)) and st[key].shape == p.shape:
                yield name, st[key]

    def layers(self) -> dict[str, dict[str, float]]:
        """{memory: {parameter: norm}} now: which layer each memory is holding most for."""
        return {key: {n: float(t.norm()) for n, t in self._buffers(key)} for key in MEMORY_KEYS[self.name]}

    def slow_updates(self) -> list[int]:
        """The steps after which M3's slow memory changed (every f steps; empty for other optimizers)."""
        m2 = self.memory_norms.get("M2", [])
        return [i + 1 for i in range(1, len(m2)) if m2[i] != m2[i - 1]]

    def spectrum(self) -> dict[str, list[float]]:
        """Singular values (descending, scaled to the largest) of the watched matrix's last update, and for
        Muon / M3 of the momentum that Newton-Schulz orthogonalises, before and after it: Muon's "all
        directions equal" (Eq. 43)."""
        out = {"update": _svals(self.last_update)}
        key = {"muon": "momentum_buffer", "m3": "M1"}.get(self.name)
        st = self.opt.state.get(self.watched, {})
        if key and torch.is_tensor(st.get(key)):
            out["momentum"] = _svals(st[key])
            out["after Newton-Schulz"] = _svals(newton_schulz(st[key].float(), 5))
        return out

    def score(self) -> dict | None:
        """The last test evaluation."""
        return next(({k[5:]: v for k, v in h.items() if k.startswith("test_")} for h in reversed(self.history)
                     if "test_loss" in h), None)  # fmt: skip


def _svals(m: torch.Tensor) -> list[float]:
    s = torch.linalg.svdvals(m.detach().float())
    return (s / s[0].clamp_min(1e-30)).tolist() if s[0] > 0 else s.tolist()


class Race:
    def __init__(self, cfg: RaceConfig):
        self.cfg = cfg
        self.problem = make_problem(cfg.task)
        self.runners = {name: Runner(name, self.problem, cfg) for name in cfg.optimizers}

    @property
    def steps(self) -> int:
        return max(r.steps for r in self.runners.values())

    @property
    def done(self) -> bool:
        return self.steps >= MAX_STEPS or all(r.diverged for r in self.runners.values())

    def advance(self, n: int = 1) -> None:
        """n more steps of every runner still training (each runner's step s sees batch s of the seed)."""
        for _ in range(min(n, MAX_STEPS - self.steps)):
            for r in self.runners.values():
                r.step(self.cfg.eval_every)

    def record(self) -> dict:
        """What the page draws, as plain data (a precomputed race is this, saved as JSON)."""
        return {"config": {"task": self.cfg.task, "optimizers": list(self.cfg.optimizers),
                           "lrs": {n: r.lr for n, r in self.runners.items()}, "seed": self.cfg.seed,
                           "eval_every": self.cfg.eval_every},
                "runners": {n: {"history": r.history, "memory_norms": r.memory_norms, "diverged": r.diverged,
                                "slow_updates": r.slow_updates(), "layers": r.layers(), "spectrum": r.spectrum()}
                            for n, r in self.runners.items()}}  # fmt: skip
