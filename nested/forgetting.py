"""The forgetting study's measures over streams (PAPER.md §8.2; docs/RESULTS.md): each language alone,
and every language's probe at the end of every segment of a schedule, over stream seeds. Built on
nested.continual's lab; the models' cards and bench/continual_study.py print them."""

from __future__ import annotations

import numpy as np

from nested.continual import ContinualLab, Learner
from nested.schedule import Schedule
from nested.tasks.languages import SuccessorLanguages


def isolation_scores(
    model, task: SuccessorLanguages, n_streams: int = 8, segment_len: int = 128, seed: int = 0
) -> dict:
    """Each language alone: a fresh stream of one segment of it, then that language's probe from the state
    reached (mean over `n_streams` stream seeds), and the in-stream accuracy over the segment's second
    half. What "the model learned the task" means on this page; printed on the model's card."""
    probe, online = {}, {}
    for t in task.task_names:
        p, o = [], []
        for s in range(n_streams):
            lab = ContinualLab(task, [Learner("m", model)], seed=seed + s, probe_every=segment_len)
            lab.feed(t, segment_len)
            p.append(lab.curves["m"][-1][t])
            o.append(lab.online_accuracy("m", segment_len // 2, segment_len))
        probe[t], online[t] = float(np.mean(p)), float(np.mean(o))
    return {"n_streams": n_streams, "segment_len": segment_len, "seed": seed, "chance": task.probe_chance(),
            "probe": probe, "in_stream": online, "probe_mean": float(np.mean(list(probe.values())))}  # fmt: skip


def retention(models: dict, task: SuccessorLanguages, schedule: str = "ABA", segment_len: int = 128,
              seeds=(0, 1, 2)) -> dict:  # fmt: skip
    """The forgetting study: for each model and stream seed, the probe of every language at the end of
    every segment of `schedule`. Returns {model: array (seeds, segments, tasks)} of accuracies."""
    out = {}
    for name, model in models.items():
        mats = []
        for s in seeds:
            lab = ContinualLab(task, [Learner(name, model)], seed=s, probe_every=segment_len)
            lab.replay(Schedule.parse(schedule, task.task_names, segment_len))
            mats.append(lab.forgetting_matrix(name))
        out[name] = np.stack(mats)
    return out
