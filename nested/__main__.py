"""The command line: `python -m nested {models,levels,stream,train,eval} ...`.

python -m nested train --preset text-hope --steps 400 --out runs/hope
python -m nested train --preset text-hope --init assets/checkpoints/hope-text --text notes.txt --steps 50
torchrun --nproc_per_node 2 -m nested train --preset smoke --out runs/ddp
python -m nested eval runs/hope/model --per-position --recall --forgetting --out runs/hope/eval
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

import nested


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", choices=sorted(nested.MODELS))
    p.add_argument("--d-model", type=int, default=64)
    p.add_argument("--n-layers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda, mps")


def _build(a) -> nested.NestedLM:
    return nested.build_model(a.model, d_model=a.d_model, n_layers=a.n_layers, seed=a.seed, device=a.device)


def cmd_models(_a) -> int:
    for name in nested.MODELS:
        print(f"{name:18s} {nested.DESCRIPTIONS[name]}")
    return 0


def cmd_levels(a) -> int:
    for lv in nested.levels(_build(a)):
        layer = "-" if lv.layer is None else lv.layer
        print(f"{lv.name:22s} layer {layer!s:3s} {lv.kind:22s} {lv.period_label:22s} {lv.params:>9d}")
    return 0


def cmd_stream(a) -> int:
    model = _build(a)
    data = nested.encode_bytes(a.text)
    if not data:
        print("error: --text is empty", file=sys.stderr)
        return 2
    with torch.no_grad():
        run = model.stream(torch.tensor(data)[None], trace=True)
    tr = run.trace
    for t, (tok, loss) in enumerate(zip(tr.tokens, tr.loss, strict=True)):
        ups = [e.component for e in tr.updates if e.token == t and e.component.startswith("cms")]
        shown = nested.decode_token(tok)
        loss_s = "   -  " if math.isnan(loss) else f"{loss:6.3f}"
        print(f"{t:5d} {shown!r:8s} loss {loss_s}  {' '.join(ups)}")
    if a.save:
        print(f"trace saved to {tr.save(a.save)}")
    return 0


def _parse_value(v: str):
    try:
        return json.loads(v)
    except json.JSONDecodeError:
        return v


def cmd_train(a) -> int:
    from nested.train import PRESETS, TrainConfig, preset, train

    overrides = {}
    for item in a.set or []:
        key, _, value = item.partition("=")
        if not _:
            print(f"error: --set expects key=value, got {item!r}", file=sys.stderr)
            return 2
        overrides[key] = _parse_value(value)
    if a.steps is not None:
        overrides["steps"] = a.steps
    if a.out:
        overrides["out_dir"] = a.out
    if a.seed is not None:
        overrides["seed"] = a.seed
    if a.compile:
        overrides["compile"] = True
    if a.init:
        overrides["init"] = a.init
    if a.text:
        try:
            text = Path(a.text).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            print(f"error: cannot read --text {a.text}: {exc}", file=sys.stderr)
            return 2
        chosen = PRESETS.get(a.preset or "", {})
        base = chosen.get("task_args", {}) if chosen.get("task", "text") == "text" else {}
        overrides["task"] = "text"
        overrides["task_args"] = {**base, **overrides.get("task_args", {}), "text": text}
    cfg = preset(a.preset, **overrides) if a.preset else TrainConfig.from_dict(overrides)
    if a.preset is None and not overrides:
        print(f"presets: {', '.join(PRESETS)}")
    last = Path(cfg.out_dir) / "last" / "trainer.json"
    if a.resume and not last.is_file():
        print(f"error: --resume: no checkpoint to resume at {last.parent} (run without --resume to start at step 0)",
              file=sys.stderr)  # fmt: skip
        return 2
    try:
        summary = train(cfg, resume=a.resume, progress=not a.quiet)
    except FloatingPointError as exc:
        print(f"error: training diverged: {exc}. The last checkpoint (if any) is in {last.parent}; try a smaller "
              "learning rate (--set lr=...) or a lower inner_clip.", file=sys.stderr)  # fmt: skip
        return 1
    summary.pop("model")
    print(json.dumps(summary, indent=1))
    return 0


def cmd_eval(a) -> int:
    from nested.evaluate import forgetting_curves, per_position_loss, recall_vs_context, write_results

    model = nested.load(a.checkpoint, device=a.device)
    results: dict = {"checkpoint": a.checkpoint, "meta": getattr(model, "checkpoint_meta", {})}
    if a.per_position or not (a.recall or a.forgetting):
        results["per_position"] = per_position_loss(model, seq_len=a.seq_len, n=a.n, seed=a.seed)
        print(f"held-out text: {results['per_position']['mean_loss']:.4f} nats/byte "
              f"({results['per_position']['bits_per_byte']:.3f} bits/byte)")  # fmt: skip
    if a.recall:
        results["recall"] = recall_vs_context(model, kind=a.recall, n=a.n, seed=a.seed)
        for r in results["recall"]["rows"]:
            print(f"{a.recall} size {r['size']:4d} (context {r['context_len']:4d}): accuracy {r['accuracy']:.3f}")
    if a.forgetting:
        results["forgetting"] = forgetting_curves(model, schedule=a.forgetting, seed=a.seed)
        for row in results["forgetting"]["matrix"]:
            print("after segment", row["after_segment"], row["segment_task"],
                  {k: round(v, 3) for k, v in row.items() if len(k) == 1})  # fmt: skip
    if a.out:
        for p in write_results(results, a.out):
            print(f"wrote {p}")
    return 0


def cmd_ship(a) -> int:
    from nested.cards import SHIPPED, ship

    names = list(SHIPPED) if a.name == "all" else [a.name]
    for name in names:
        if name not in SHIPPED:
            print(f"error: unknown shipped model {name!r}; choose all or one of {', '.join(SHIPPED)}", file=sys.stderr)
            return 2
        print(f"wrote {ship(name, progress=not a.quiet, from_run=a.from_run)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m nested", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("models", help="list the model registry").set_defaults(fn=cmd_models)
    p = sub.add_parser("levels", help="print the nest of a model, fastest to slowest")
    _model_args(p)
    p.set_defaults(fn=cmd_levels)
    p = sub.add_parser("stream", help="stream text token by token; per-token loss and CMS updates")
    _model_args(p)
    p.add_argument("--text", required=True)
    p.add_argument("--save", default=None, help="save the trace (.npz)")
    p.set_defaults(fn=cmd_stream)
    p = sub.add_parser("train", help="train any model on any task with any optimizer")
    p.add_argument("--preset", default=None, help="a named configuration (see nested.train.PRESETS)")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--out", default=None, help="output directory (checkpoints, history, final model)")
    p.add_argument("--set", action="append", help="override a config field: key=value (JSON values)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last exactly")
    p.add_argument(
        "--init",
        default=None,
        metavar="CHECKPOINT",
        help="start from this checkpoint's weights and config (adapt, e.g. assets/checkpoints/hope-text)",
    )
    p.add_argument("--text", default=None, metavar="FILE", help="train on this UTF-8 text file (the text task)")
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the training step (nested.compile_model 'train': one graph per CMS segment where "
        "cms_grad=segment, else the chunk steps; 2-5 min to compile cold)",
    )
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(fn=cmd_train)
    p = sub.add_parser("eval", help="evaluate a checkpoint: per-position loss, recall, forgetting")
    p.add_argument("checkpoint")
    p.add_argument("--per-position", action="store_true")
    p.add_argument("--recall", choices=["recall", "niah"], default=None)
    p.add_argument("--forgetting", default=None, metavar="SCHEDULE", help='e.g. "ABAC"')
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--n", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=None, help="write results.json and CSV tables here")
    p.set_defaults(fn=cmd_eval)
    p = sub.add_parser("ship", help="retrain a shipped checkpoint in assets/checkpoints and write its card")
    p.add_argument("name", help="all, or one of nested.cards.SHIPPED")
    p.add_argument("--quiet", action="store_true")
    p.add_argument(
        "--from",
        dest="from_run",
        default=None,
        help="ship the finished run in this directory (trained by the same recipe) instead of retraining",
    )
    p.set_defaults(fn=cmd_ship)
    a = ap.parse_args(argv)
    try:
        return a.fn(a)
    except (nested.NestedError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a full disk, a read-only folder: said plainly; checkpoints are written atomically
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"error: cannot write or read a file{where}: {exc.strerror or exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
