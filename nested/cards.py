"""The shipped checkpoints (assets/checkpoints/NAME): how each is made, evaluated and described.

    python -m nested ship all          # retrain every shipped model, evaluate, write its card
    python -m nested ship hope-text    # one of them

Each card records the command, the training time on the machine that ran it, the final training loss
and a deterministic evaluation (`card_eval`) that the tests recompute from the shipped weights."""

from __future__ import annotations

import json
import platform
import shutil
import tempfile
from pathlib import Path

import torch

import nested
from nested.checkpoint import CHECKPOINTS, CONFIG
from nested.tasks import make_task

SHIPPED: dict[str, dict] = {
    "hope-text": {"preset": "text-hope", "steps": 800, "what": "Hope (self-modifying Titans + CMS) byte LM on Python's docs"},
    "titans-text": {"preset": "text-titans", "steps": 800, "what": "Titans LMM byte LM on Python's docs (matched size)"},
    "transformer-text": {"preset": "text-transformer", "steps": 800, "what": "Transformer byte LM on Python's docs (matched size)"},
    "hope-recall": {"preset": "recall-mixed-hope", "steps": 2000, "partly": True,
                    "continue_preset": "recall-mix-hope", "continue_steps": 800,
                    "what": "Hope trained for associative recall over 4-32 pairs, then on recall and needles in "
                            "haystacks of up to 128 bytes (recall lab, matched size); it learns MQAR only partly at "
                            "this budget"},
    # hope-switching (in-context key -> value maps that switch) was retired in session 13: at 250 steps it stayed
    # at chance (0.043 against 0.038) and the continual page runs the successor-language models instead
    # continual learning in context (pages/continual.py): one recipe, matched size
    # hope-languages: normalised writes since session 14 (each language alone 0.996; the plain-GD model was 0.76)
    # continued: 1,750 steps, then `continue_steps` more from those weights with a fresh optimizer (the recipe's
    # lr is constant, so only AdamW's moments restart)
    "hope-languages": {"preset": "languages-hope", "steps": 1750, "continue_steps": 900,
                       "what": "Hope trained to learn successor languages in context (continual-learning page)"},
    "titans-languages": {"preset": "languages-titans", "steps": 1200,
                         "what": "Titans trained to learn successor languages in context (matched size)"},
    "swa-languages": {"preset": "languages-transformer-swa", "steps": 1500,
                      "what": "Transformer with a 64-token sliding window on successor languages (matched size)"},
    "transformer-languages": {"preset": "languages-transformer", "steps": 1500,
                              "what": "Transformer (full attention) on successor languages (matched size)"},
    # the recall lab (pages/recall.py): MQAR over 4-32 pairs, then MQAR and needles in haystacks of 56-128 bytes
    # from those weights (`recall-mix-*`, bench/recall_mix.sh); matched size. MQAR is learned only partly at these
    # budgets (held-out accuracy over the mixed lengths: Transformer 0.34, Titans ~0.5, window 0.24, Hope ~0.46;
    # chance 0.1); the cards give accuracy vs context on MQAR and one needle
    "transformer-recall": {"preset": "recall-mixed-transformer", "steps": 5000, "partly": True,
                           "continue_preset": "recall-mix-transformer", "continue_steps": 1500,
                           "what": "Transformer (full attention) trained for associative recall over 4-32 pairs, then on "
                                   "recall and needles in haystacks of up to 128 bytes; it learns MQAR only partly at "
                                   "this budget (short contexts best)"},
    "swa-recall": {"preset": "recall-mixed-transformer-swa", "steps": 2000, "partly": True,
                   "continue_preset": "recall-mix-transformer-swa", "continue_steps": 1500,
                   "what": "Transformer with a 24-token sliding window trained for associative recall over 4-32 "
                           "pairs, then on recall and needles; it learns MQAR only partly (pairs beyond its window "
                           "are out of reach)"},
    "titans-recall": {"preset": "recall-mixed-titans", "steps": 2000, "partly": True,
                      "continue_preset": "recall-mix-titans", "continue_steps": 800,
                      "what": "Titans trained for associative recall over 4-32 pairs, then on recall and needles in "
                              "haystacks of up to 128 bytes (matched size); it learns MQAR only partly at this budget"},
}  # fmt: skip


def continual_eval(model, train_cfg: dict) -> dict | None:
    """Languages models: each language alone (nested.continual.isolation_scores), on the card."""
    if train_cfg["task"] != "languages":
        return None
    from nested.forgetting import isolation_scores

    return isolation_scores(model, make_task("languages", **train_cfg["task_args"]))


STAGE_KEYS = ("task", "task_args", "optimizer", "lr", "batch_size")  # what a second stage by another preset changes
RECALL_CARD = {"mqar": (4, 8, 16, 32), "niah-single": (64, 128, 256, 512)}


def recall_eval(model, n: int = 64, seed: int = 0) -> dict:
    """Recall models: accuracy vs context length on MQAR and one needle (nested.recall_lab), on the card."""
    from nested.recall_lab import recall_curve

    return {"n": n, "seed": seed, **{family: {str(r["size"]): r["accuracy"] for r in recall_curve(model, family, sizes, n, seed)}
                                     for family, sizes in RECALL_CARD.items()}}  # fmt: skip


def card_eval(model, train_cfg: dict, n: int = 64, seed: int = 0) -> dict:
    """The deterministic evaluation written on the card: the training task's held-out probe."""
    args = dict(train_cfg["task_args"])
    if train_cfg["task"] == "text":
        args["split"] = "val"
    task = make_task(train_cfg["task"], **args)
    with torch.no_grad():
        res = task.probe(lambda x: model(x), n=n, seed=10**6 + seed)
    return {"task": train_cfg["task"], "task_args": args, "n": n, "seed": seed, **res}


def ship(name: str, progress: bool = True, from_run: str | Path | None = None) -> Path:
    """Train `name` by its recipe (or take the finished run in `from_run`, trained by the same recipe:
    `python -m nested train --preset P --steps N --out DIR`), evaluate it and write it with its card.
    A recipe with `continue_steps` trains a second stage from the first one's weights with a fresh
    optimizer, by `continue_preset` (default: the same preset)."""
    from nested.train import preset, train

    spec = SHIPPED[name]
    cfg = preset(spec["preset"], steps=spec["steps"], eval_every=0, ckpt_every=0, **spec.get("overrides", {}))
    more = spec.get("continue_steps", 0)
    second = spec.get("continue_preset", spec["preset"])
    dest = CHECKPOINTS / name
    if from_run is not None:
        run = Path(from_run)
        model = nested.load(run / "model", device="cpu").eval()
        done = model.checkpoint_meta
        free = ("steps", "compile", "eval_every", "ckpt_every", "out_dir", "eval_samples", "init")
        expect = more or cfg.steps
        cfg2 = preset(second, steps=more, **spec.get("overrides", {})) if more else cfg  # what the run must match
        if (
            {k: v for k, v in done["train"].items() if k not in free}
            != {k: v for k, v in vars(cfg2).items() if k not in free}
            or done["steps"] != expect
            or bool(more) != bool(done["train"].get("init"))
        ):
            raise ValueError(f"{run} was not trained by the {name} recipe ({spec['preset']}, {cfg.steps} steps"
                             + (f", then {more} by {second} from those weights)" if more else ")"))  # fmt: skip
        summary = {k: done[k] for k in ("tokens_seen", "train_seconds")} | {"threads": done.get("threads", "?")}
        if more:  # the first stage is the checkpoint it continued from: its card holds that stage's cost
            first = json.loads((Path(done["train"]["init"]) / CONFIG).read_text())["meta"]
            if first.get("steps") != cfg.steps:
                raise ValueError(f"{run} continued a {first.get('steps')}-step run, not the recipe's {cfg.steps}")
            summary = _with_first_stage(summary, first)
        history = json.loads((run / "history.json").read_text())
    else:
        with tempfile.TemporaryDirectory() as tmp:
            cfg.out_dir, cfg2 = tmp, cfg
            summary = train(cfg, progress=progress)
            model = summary.pop("model").cpu().eval()
            history = json.loads((Path(tmp) / "history.json").read_text())
            if more:  # second stage: the first stage's weights, a fresh optimizer
                first = summary
                nested.save(model, Path(tmp) / "first")
                cfg2 = preset(second, steps=more, eval_every=0, ckpt_every=0, init=str(Path(tmp) / "first"),
                              out_dir=str(Path(tmp) / "second"), **spec.get("overrides", {}))  # fmt: skip
                summary = train(cfg2, progress=progress)
                model = summary.pop("model").cpu().eval()
                history = json.loads((Path(tmp) / "second" / "history.json").read_text())
                summary = _with_first_stage(summary, first)
    if dest.exists():
        shutil.rmtree(dest)
    nested.save(model, dest)
    ev = card_eval(model, json.loads(json.dumps(vars(cfg))))
    tail = history[-20:]
    meta = {
        "name": name,
        "preset": spec["preset"],
        "command": f"python -m nested ship {name}",
        "train": {k: v for k, v in vars(cfg).items() if k != "out_dir"},
        "steps": cfg.steps + more,
        **({"stages": [cfg.steps, more]} if more else {}),
        **(
            {"continue_preset": second, "continue_train": {k: getattr(cfg2, k) for k in STAGE_KEYS}}
            if more and second != spec["preset"]
            else {}
        ),
        "tokens_seen": summary["tokens_seen"],
        "train_seconds": summary["train_seconds"],
        "machine": f"{platform.machine()}, {summary.get('threads', torch.get_num_threads())} threads, torch {torch.__version__}",
        "final_train_loss": sum(h["loss"] for h in tail) / len(tail),
        "card_eval": ev,
        "version": nested.__version__,
    }
    cont = continual_eval(model, json.loads(json.dumps(vars(cfg))))
    if cont is not None:
        meta["continual_eval"] = cont
    if spec["preset"].startswith("recall-"):
        meta["recall_eval"] = recall_eval(model)
    doc = json.loads((dest / CONFIG).read_text())
    doc["meta"] = meta
    (dest / CONFIG).write_text(json.dumps(doc, indent=2, sort_keys=True))
    write_card(dest, spec["what"], meta, sum(p.numel() for p in model.parameters()))
    return dest


def _with_first_stage(summary: dict, first: dict) -> dict:
    """A continued run's summary with the first stage's tokens and seconds added (the card's whole cost)."""
    return summary | {k: summary[k] + first[k] for k in ("tokens_seen", "train_seconds")}


def _second_task(meta: dict) -> str:
    t = meta.get("continue_train")
    if not t:
        return ""
    return (f"; then `{t['task']}` {json.dumps(t['task_args'])}, optimizer {t['optimizer']} lr {t['lr']}, "
            f"batch {t['batch_size']}")  # fmt: skip


def _steps_line(meta: dict) -> str:
    stages = meta.get("stages")
    if not stages:
        return f"{meta['steps']} steps"
    by = f" on `{meta['continue_preset']}`" if meta.get("continue_preset") else ""
    return (f"{meta['steps']:,} steps: {stages[0]:,}, then {stages[1]:,} more{by} from those weights with a fresh "
            "optimizer")  # fmt: skip


def write_card(dest: Path, what: str, meta: dict, n_params: int) -> None:
    ev = meta["card_eval"]
    size_kb = (dest / "model.safetensors").stat().st_size / 1024
    lines = [
        f"# {meta['name']}",
        "",
        what + ".",
        "",
        f"- Reproduce: `{meta['command']}` (preset `{meta['preset']}`, {_steps_line(meta)}, seed {meta['train']['seed']})",
        f"- Model: `{meta['train']['model']}` {json.dumps(meta['train']['model_args'])}, {n_params:,} parameters, "
        f"{size_kb:.0f} KB of weights",
        f"- Task: `{meta['train']['task']}` {json.dumps(meta['train']['task_args'])}; optimizer {meta['train']['optimizer']} "
        f"lr {meta['train']['lr']}, batch {meta['train']['batch_size']}" + _second_task(meta),
        f"- Training: {meta['tokens_seen']:,} tokens in {meta['train_seconds']:.0f} s on {meta['machine']}",
        f"- Final training loss (mean of the last 20 steps): {meta['final_train_loss']:.4f} nats/token",
        f"- Evaluation ({ev['n']} held-out samples, seed {ev['seed']}): loss {ev['loss']:.4f} nats/token "
        f"({ev['bits_per_token']:.3f} bits), accuracy {ev['accuracy']:.3f} (chance {ev['chance']:.3f}), "
        f"exact match {ev['exact_match']:.3f}",
    ]  # fmt: skip
    cont = meta.get("continual_eval")
    if cont:
        per = ", ".join(f"{t} {v:.2f}" for t, v in cont["probe"].items())
        lines.append(
            f"- Each language alone ({cont['n_streams']} streams of {cont['segment_len']} tokens, seed {cont['seed']}): "
            f"probe accuracy {per} (mean {cont['probe_mean']:.3f}; chance {cont['chance']:.3f}); in-stream accuracy over "
            f"the segment's second half " + ", ".join(f"{t} {v:.2f}" for t, v in cont["in_stream"].items())
        )
    rec = meta.get("recall_eval")
    if rec:
        curve = lambda fam: ", ".join(f"{k} {v:.2f}" for k, v in rec[fam].items())  # noqa: E731
        lines.append(f"- Accuracy vs context ({rec['n']} samples a size, seed {rec['seed']}; chance 0.10): MQAR by "
                     f"key-value pairs {curve('mqar')}; one needle by bytes of haystack {curve('niah-single')}")  # fmt: skip
    lines += ["", "The evaluation above is recomputed from these weights by tests/test_shipped_checkpoints.py."]
    (dest / "README.md").write_text("\n".join(lines) + "\n")


def shipped() -> list[str]:
    return sorted(p.name for p in CHECKPOINTS.glob("*") if (p / CONFIG).is_file())
