"""The command line: `python -m nested {models,levels,stream} ...`."""

from __future__ import annotations

import argparse
import math
import sys

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
    data = a.text.encode("utf-8")
    if not data:
        print("error: --text is empty", file=sys.stderr)
        return 2
    with torch.no_grad():
        run = model.stream(torch.tensor(list(data))[None], trace=True)
    tr = run.trace
    for t, (tok, loss) in enumerate(zip(tr.tokens, tr.loss, strict=True)):
        ups = [e.component for e in tr.updates if e.token == t and e.component.startswith("cms")]
        shown = chr(tok) if 32 <= tok < 127 else f"\\x{tok:02x}"
        loss_s = "   -  " if math.isnan(loss) else f"{loss:6.3f}"
        print(f"{t:5d} {shown!r:8s} loss {loss_s}  {' '.join(ups)}")
    if a.save:
        print(f"trace saved to {tr.save(a.save)}")
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
    a = ap.parse_args(argv)
    try:
        return a.fn(a)
    except nested.NestedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
