"""Evaluation (`python -m nested eval ...`): per-position loss, recall accuracy vs context length, and
forgetting curves over a task-switching stream. Results are plain dicts, written as JSON and CSV."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from nested.tasks import AssociativeRecall, NeedleInHaystack, TaskSwitching, TextTask


@torch.no_grad()
def per_position_loss(model, seq_len: int = 128, n: int = 32, seed: int = 0, text: str | None = None) -> dict:
    """Mean next-byte loss (nats) at each position of held-out text windows: does the model use context?"""
    task = TextTask(seq_len=seq_len, split="val") if text is None else TextTask(seq_len=seq_len, text=text)
    b = task.sample(n, seed)
    logits = model(b.inputs.to(model.device)).float().cpu()
    loss = F.cross_entropy(logits.transpose(1, 2), b.targets, reduction="none")  # (n, T)
    per = loss.mean(0)
    return {"position": list(range(seq_len)), "loss": per.tolist(), "mean_loss": float(loss.mean()),
            "bits_per_byte": float(loss.mean()) / float(np.log(2))}  # fmt: skip


@torch.no_grad()
def recall_vs_context(model, kind: str = "recall", sizes=None, n: int = 64, seed: int = 0) -> dict:
    """Accuracy as the context grows: associative recall by number of pairs (4..32), or NIAH by context
    length in bytes (64..512)."""
    sizes = sizes or ((4, 8, 16, 32) if kind == "recall" else (64, 128, 256, 512))
    rows = []
    for s in sizes:
        task = (
            AssociativeRecall(n_pairs=s, n_queries=min(s, 8)) if kind == "recall" else NeedleInHaystack(context_len=s)
        )
        res = task.probe(lambda x: model(x.to(model.device)).cpu(), n=n, seed=seed)
        ctx = task.context_len if kind == "recall" else s
        rows.append({"size": s, "context_len": ctx, "accuracy": res["accuracy"], "chance": res["chance"]})
    return {"kind": kind, "rows": rows}


@torch.no_grad()
def forgetting_curves(model, family: str = "map", schedule: str = "ABAC", per_segment: int = 24, n_tasks: int = 3,
                      seed: int = 0, probes: int = 16) -> dict:  # fmt: skip
    """Stream a schedule through the model. Returns (1) in-stream accuracy per example, labelled with its
    task and segment, and (2) at each segment end, the accuracy on fresh probes of *every* task from the
    state reached there (the forgetting matrix)."""
    task = TaskSwitching(family=family, n_tasks=n_tasks, schedule=schedule, examples_per_segment=per_segment)
    stream = task.stream(seed)
    x, y = stream.batch.inputs.to(model.device), stream.batch.targets
    in_stream = []
    matrix = []
    state = None
    for name, a, b in stream.segments:
        run = model.run(x[:, a : min(b, x.shape[1])], state=state)
        state = run.state
        pred = run.logits.argmax(-1).cpu()[0]
        tgt = y[0, a : min(b, x.shape[1])]
        for j in torch.nonzero(tgt != -100)[:, 0].tolist():
            in_stream.append({"pos": a + j, "task": name, "correct": int(pred[j] == tgt[j])})
        row = {"after_segment": len(matrix), "segment_task": name}
        for t in task.task_names:
            pb = task.probe_batch(t, stream.rules, probes, seed + 1000 + len(matrix))
            hits = total = 0
            for i in range(pb.inputs.shape[0]):  # branch the same state for every probe
                out = model.run(pb.inputs[i : i + 1].to(model.device), state=state).logits.argmax(-1).cpu()[0]
                mask = pb.targets[i] != -100
                hits += int((out[mask] == pb.targets[i][mask]).sum())
                total += int(mask.sum())
            row[t] = hits / max(total, 1)
        matrix.append(row)
    return {"schedule": schedule, "family": family, "in_stream": in_stream, "matrix": matrix,
            "segments": [list(s) for s in stream.segments]}  # fmt: skip


def write_results(results: dict, out_dir: str | Path) -> list[Path]:
    """results.json plus one CSV per table."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "results.json"]
    written[0].write_text(json.dumps(results, indent=1))
    tables = {
        "per_position_loss.csv": [{"position": p, "loss": v} for p, v in
                                  zip(results.get("per_position", {}).get("position", []),
                                      results.get("per_position", {}).get("loss", []), strict=True)],
        "recall_vs_context.csv": results.get("recall", {}).get("rows", []),
        "forgetting_matrix.csv": results.get("forgetting", {}).get("matrix", []),
        "forgetting_in_stream.csv": results.get("forgetting", {}).get("in_stream", []),
    }  # fmt: skip
    for name, rows in tables.items():
        if rows:
            with open(out / name, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=list(rows[0]))
                w.writeheader()
                w.writerows(rows)
            written.append(out / name)
    return written
