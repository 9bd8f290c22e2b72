"""Shipped sample texts: passages of Python's own offline documentation (pydoc_data.topics)."""

from __future__ import annotations

from functools import lru_cache

SAMPLE_TOPICS = {"The for statement": "for", "The with statement": "with", "Booleans": "booleans",
                 "Assignment": "assignment", "Exceptions": "exceptions"}  # fmt: skip


@lru_cache(maxsize=1)
def sample_texts(max_chars: int = 2000) -> dict[str, str]:
    from pydoc_data.topics import topics

    out = {}
    for title, key in SAMPLE_TOPICS.items():
        text = topics.get(key, "")
        out[title] = " ".join(text.split())[:max_chars]
    return out
