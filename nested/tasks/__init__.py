"""Procedural, seeded tasks (nothing is downloaded). Each gives byte sequences with per-position targets
and a probe that scores any predictor on it."""

from nested.tasks.base import IGNORE, Batch, Task
from nested.tasks.formal import FormalLanguage
from nested.tasks.languages import LanguageStream, SuccessorLanguages
from nested.tasks.recall import AssociativeRecall, NeedleInHaystack, RecallMix
from nested.tasks.switching import Stream, TaskSwitching
from nested.tasks.text import NewLanguageTask, TextTask

TASKS = {
    "text": TextTask,
    "recall": AssociativeRecall,
    "niah": NeedleInHaystack,
    "recall-mix": RecallMix,
    "switching": TaskSwitching,
    "new-language": NewLanguageTask,
    "formal": FormalLanguage,
    "languages": SuccessorLanguages,
}


def make_task(name: str, **kwargs) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {sorted(TASKS)}")
    return TASKS[name](**kwargs)


__all__ = ["IGNORE", "TASKS", "AssociativeRecall", "Batch", "FormalLanguage", "LanguageStream",
           "NeedleInHaystack", "NewLanguageTask", "RecallMix", "Stream", "SuccessorLanguages", "Task", "TaskSwitching", "TextTask", "make_task"]  # fmt: skip
