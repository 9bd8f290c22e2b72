"""The recall lab (PAPER.md §8.4-8.5; issue 15): what each memory kept, and where the needle was written.

    curve = recall_curve(model, "mqar", sizes=[4, 8, 16, 32])        # accuracy vs context length
    curve_off = recall_curve(model, "mqar", switch="off")              # test-time learning off
    ex = example(model, "niah-single", size=128, seed=3)               # one haystack, token by token

Families: "mqar" (multi-query associative recall; size = number of key-value pairs) and needle in a haystack,
"niah-single" / "niah-multikey" (4 needles, one asked; "-2" / "-8": 2 or 8 needles) / "niah-passkey" (size =
context length in bytes).

Switches act on the model's inner levels for one run (nested.Freeze; the outer weights never change):
- "on": the model as trained: its memories and CMS levels learn from the context (test-time learning);
- "off": every memory's write strength and every CMS level's learning rate scaled by 0: the memories keep
  their meta-learned initial values except for their decay (M <- alpha M), the CMS levels stay bit-for-bit
  fixed. The drop from "on" is what learning at test time contributes;
- "ascent": every memory's write strength scaled by -1 (CMS untouched): each inner step climbs the inner
  loss instead of descending it. arXiv 2602.21204 reports that test-time-training layers barely suffer
  from this (they act like learned linear attention); a model that really memorises by gradient descent
  on its inner objective should lose its recall.
- "steps x4": four inner steps per token instead of one (`ModelConfig.inner_steps`), each with the token's own
  gradient; the same weights, CMS untouched. The other experiment of arXiv 2602.21204: a memory that fits its
  key-value pairs by gradient descent should keep (or improve) its recall with more steps; a layer that only
  acts as learned linear attention has no reason to.
A model without in-context memories (a Transformer) has nothing to switch: its runs are identical.
"""

from __future__ import annotations

import copy
import math
import weakref
from dataclasses import dataclass

import numpy as np
import torch

from nested.errors import NonFiniteMemoryError
from nested.freeze import Freeze
from nested.tasks import make_task
from nested.tasks.recall import NEEDLE


@dataclass(frozen=True)
class Family:
    task: str
    args: object  # size -> task arguments
    sizes: tuple[int, ...]
    size_label: str


FAMILIES = {
    "mqar": Family("recall", lambda n: {"n_pairs": n, "n_queries": min(8, n)}, (4, 8, 16, 24, 32), "key-value pairs"),
    "niah-single": Family("niah", lambda n: {"context_len": n, "variant": "single"}, (64, 128, 256, 512),
                          "context (bytes)"),
    **{f"niah-multikey{suffix}": Family("niah", lambda n, k=k: {"context_len": n, "variant": "multikey", "n_needles": k},
                                        sizes, "context (bytes)")
       for suffix, k, sizes in (("-2", 2, (64, 128, 256, 512)), ("", 4, (64, 128, 256, 512)), ("-8", 8, (128, 256, 512)))},
    "niah-passkey": Family("niah", lambda n: {"context_len": n, "variant": "passkey"}, (64, 128, 256, 512),
                           "context (bytes)"),
}  # fmt: skip
SWITCHES = ("on", "off", "ascent", "steps x4")
MORE_STEPS = 4  # inner steps per token under "steps x4"
MAX_SIZE = {"recall": 64, "niah": 2048}  # what a live run may ask for (a 2 KB haystack streams in seconds)


def make(family: str, size: int):
    if family not in FAMILIES:
        raise ValueError(f"unknown recall task {family!r}; choose one of {', '.join(FAMILIES)}")
    fam = FAMILIES[family]
    if not isinstance(size, int) or size < 1 or size > MAX_SIZE[fam.task]:
        raise ValueError(f"{fam.size_label} must be an integer in [1, {MAX_SIZE[fam.task]}], got {size!r}")
    return make_task(fam.task, **fam.args(size))


def inner_spec(model, switch: str) -> Freeze:
    """The Freeze that realises a switch on `model` (see the module docstring)."""
    if switch not in SWITCHES:
        raise ValueError(f"switch must be one of {SWITCHES}, got {switch!r}")
    names = model.freeze_options()
    if switch in ("on", "steps x4"):
        return Freeze()
    if switch == "off":
        return Freeze(tuple((n, 0.0) for n in names))
    return Freeze(tuple((n, -1.0) for n in names if n.endswith("memories")))


_STEPPED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def switched_model(model, switch: str):
    """The model a switch runs: `model` itself, or for "steps x4" a copy of it (same weights, read-only
    like it) whose memories take MORE_STEPS inner steps per token; one copy per model, kept while it lives."""
    if switch != "steps x4":
        return model
    if model not in _STEPPED:
        clone = copy.deepcopy(model)
        clone.cfg.inner_steps = MORE_STEPS  # every module of the clone shares this one config object
        _STEPPED[model] = clone
    return _STEPPED[model]


def predictor(model, switch: str = "on"):
    """tokens (B, T) -> logits from a fresh state, with the switch applied to every inner level."""
    spec = inner_spec(model, switch)
    model = switched_model(model, switch)

    @torch.no_grad()
    def predict(tokens: torch.Tensor) -> torch.Tensor:
        tokens = tokens.to(model.device)
        return model.run(tokens, model.init_state(tokens.shape[0], freeze=spec)).logits.cpu()

    return predict


def recall_curve(model, family: str, sizes=None, n: int = 64, seed: int = 0, switch: str = "on",
                 progress=None) -> list[dict]:  # fmt: skip
    """Accuracy at every size: the fraction of scored answer symbols whose argmax over the task's answer
    alphabet is right (nested.tasks.Task.probe), with the exact-match rate and the count it rests on. A size
    whose inner loop diverges (a memory or CMS level not finite) gets accuracy None and the error."""
    fam = FAMILIES.get(family)
    if fam is None:
        raise ValueError(f"unknown recall task {family!r}; choose one of {', '.join(FAMILIES)}")
    predict, out = predictor(model, switch), []
    for i, size in enumerate(sizes or fam.sizes):
        task = make(family, int(size))
        try:
            r = task.probe(predict, n=n, seed=seed + 1000 * int(size), batch_size=min(32, n))
        except NonFiniteMemoryError as exc:  # e.g. ascent: the inner loop blows up; a result, not a crash
            out.append({"size": int(size), "accuracy": None, "exact_match": None, "scored": 0,
                        "chance": task.chance, "diverged": str(exc)})  # fmt: skip
        else:
            out.append({"size": int(size), "accuracy": r["accuracy"], "exact_match": r["exact_match"],
                        "scored": r["scored"], "chance": r["chance"]})  # fmt: skip
        if progress is not None:
            progress((i + 1) / len(sizes or fam.sizes))
    return out


def _needles(family: str, text: str) -> list[tuple[int, int]]:
    """Byte spans of what the model must have written: the needles, or the queried key-value pairs."""
    if family.startswith("niah"):
        q = text.rindex(" #")
        return [(m.start(), m.end()) for m in NEEDLE.finditer(text[:q])]
    pairs, _, queries = text.partition("|")
    asked = {queries[j : j + 2] for j in range(0, len(queries), 3)}
    return [(j, j + 3) for j in range(0, len(pairs), 3) if pairs[j : j + 2] in asked]


def _memory_change(trace, layer: int) -> np.ndarray:
    """Per token, the Frobenius norm of the change of the layer's main memory (NaN where not recorded)."""
    snaps = dict(trace.snapshots.get(layer, []))
    out = np.full(len(trace), np.nan, np.float32)
    if not snaps:
        return out
    name = next(iter(snaps.values())).keys()
    main = "M_memory" if "M_memory" in name else sorted(name)[0]
    start = trace.meta.get("start", 0)
    for t in range(1, len(trace)):
        a, b = snaps.get(start + t - 1), snaps.get(start + t)
        if a is not None and b is not None:
            out[t] = float(np.linalg.norm(b[main] - a[main]))
    return out


@torch.no_grad()
def example(model, family: str, size: int, seed: int = 0, switch: str = "on") -> dict:
    """One sequence of the task streamed token by token: the text, the needle spans, the scored positions
    with the answer, the model's prediction and the probability it gave the answer, and per token the surprise, eta (mean over heads) and the
    change of each layer's memory (memory models; empty lists for a Transformer)."""
    task = make(family, size)
    batch = task.sample(1, seed)
    tokens = batch.inputs[:1]
    spec = inner_spec(model, switch)
    model = switched_model(model, switch)
    res = model.stream(tokens.to(model.device), model.init_state(1, freeze=spec), trace=True)
    logits = res.logits[0].float().cpu()
    answers = torch.tensor(task.answers)
    scored = [int(t) for t in torch.nonzero(batch.targets[0] != -100).flatten()]
    pred = answers[logits[:, answers].argmax(-1)]
    over_answers = logits[:, answers].softmax(-1)  # the read at each position, as a distribution over answers
    text = bytes(tokens[0].tolist()).decode("latin-1")
    tr = res.trace
    has_memory = any(n.endswith("memories") for n in model.freeze_options())
    layers = range(model.cfg.n_layers)
    return {
        "family": family, "size": size, "seed": seed, "switch": switch, "text": text,
        "needles": [list(span) for span in _needles(family, text)],
        "question": text.rindex(" #") if family.startswith("niah") else text.index("|"),  # where the asking starts
        "scored": scored, "answer": [chr(int(batch.targets[0, t])) for t in scored],
        "predicted": [chr(int(pred[t])) for t in scored],
        "correct": [bool(pred[t] == batch.targets[0, t]) for t in scored],
        # what the read at each query returned: the probability of the stored answer among the answers
        "p_answer": [float(over_answers[t, task.answers.index(int(batch.targets[0, t]))]) for t in scored],
        "surprise": [tr.array("surprise")[:, i].mean(-1).tolist() for i in layers] if has_memory else [],
        "eta": [tr.array("eta")[:, i].mean(-1).tolist() for i in layers] if has_memory else [],
        "memory_change": [_memory_change(tr, i).tolist() for i in layers] if has_memory else [],
    }  # fmt: skip


def write_ratio(ex: dict, what: str = "memory_change", layer: int = 0) -> float:
    """Mean of `what` on the needle tokens over its mean on the rest of the context before the question
    (MQAR: the pairs never asked): above 1 when the model writes harder where the needle is."""
    values = np.asarray(ex[what][layer], dtype=float) if ex[what] else np.zeros(0)
    if not len(values):
        return math.nan
    inside = np.zeros(len(values), bool)
    for a, b in ex["needles"]:
        inside[a : min(b, len(values))] = True
    before = np.arange(len(values)) < ex["question"]
    hay = values[before & ~inside & np.isfinite(values)]
    needle = values[inside & np.isfinite(values)]
    return float(needle.mean() / hay.mean()) if len(hay) and len(needle) and hay.mean() > 0 else math.nan
