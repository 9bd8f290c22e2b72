"""Guided lessons: markdown files in assets/lessons with a small header naming the preset they open.

---
title: Levels and frequencies
preset: nest-hope
---
**What to do.** ...  **What to look for.** ...  **Why.** ...
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from app.presets import PRESETS, Preset
from app.registry import PAGES, ROOT
from app.urlstate import LESSON_PARAM, PRESET_PARAM, share_query

LESSON_DIR = ROOT / "assets" / "lessons"


@dataclass(frozen=True)
class Lesson:
    name: str  # file stem without its order prefix, e.g. "levels-and-frequencies"
    title: str
    preset: Preset
    body: str

    def query(self, extra: dict | None = None) -> dict:
        return {PRESET_PARAM: self.preset.name, LESSON_PARAM: self.name, **(extra or {})}

    def url(self, extra: dict | None = None) -> str:
        """The relative link that opens the lesson's page in the lesson's state."""
        page = next(p for p in PAGES if p.url_path == self.preset.page)
        return f"/{page.url}?{share_query(self.query(extra))}"


def parse_lesson(path: Path) -> Lesson:
    text = path.read_text(encoding="utf-8")
    if not text.startswith("---\n") or "\n---\n" not in text[4:]:
        raise ValueError(f"{path.name}: a lesson starts with a '---' header")
    head, body = text[4:].split("\n---\n", 1)
    fields = dict(line.split(":", 1) for line in head.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    if fields.get("preset") not in PRESETS:
        raise ValueError(f"{path.name}: unknown preset {fields.get('preset')!r}")
    name = path.stem.split("-", 1)[1] if path.stem[:2].isdigit() else path.stem
    return Lesson(name, fields.get("title", name), PRESETS[fields["preset"]], body.strip())


@lru_cache(maxsize=1)
def lessons() -> dict[str, Lesson]:
    """All lessons in file order (the numeric prefix sets the order)."""
    return {ls.name: ls for ls in (parse_lesson(p) for p in sorted(LESSON_DIR.glob("*.md")))}
