"""Shipped sample texts: the prose of passages of Python's own offline documentation (pydoc_data.topics),
without its reStructuredText furniture (title underlines, grammar productions, code blocks, *emphasis*
markers, list bullets), so a sample reads as English and a view lands in a sentence."""

from __future__ import annotations

import re
from functools import lru_cache

SAMPLE_TOPICS = {"The for statement": "for", "The with statement": "with", "Booleans": "booleans",
                 "Assignment": "assignment", "Exceptions": "exceptions"}  # fmt: skip
_UNDERLINE = re.compile(r"^[*=\-~^]{3,}$")
_EMPHASIS = re.compile(r"\*{1,2}([^*\s][^*]*?)\*{1,2}")


def prose(rst: str) -> str:
    """The running text of an RST passage: its paragraphs in order, one line; titles, indented blocks
    (grammar, code, examples) and emphasis markers dropped. A sentence that introduced a dropped block
    (ending in ':') ends in '.' instead."""
    kept: list[str] = []
    for para in re.split(r"\n\s*\n", rst):
        lines = [ln for ln in para.splitlines() if ln.strip()]
        if not lines or any(_UNDERLINE.match(ln.strip()) for ln in lines) or lines[0].startswith("   "):
            if kept and kept[-1].endswith(":") and lines and lines[0].startswith("   "):
                kept[-1] = kept[-1][:-1] + "."
            continue
        text = " ".join(ln.strip().removeprefix("* ") for ln in lines)  # list bullets read as sentences
        kept.append(_EMPHASIS.sub(r"\1", text))
    return " ".join(" ".join(kept).split())  # one space between sentences, as in running text


@lru_cache(maxsize=1)
def sample_texts(max_chars: int = 2000) -> dict[str, str]:
    from pydoc_data.topics import topics

    return {title: prose(topics.get(key, ""))[:max_chars] for title, key in SAMPLE_TOPICS.items()}
