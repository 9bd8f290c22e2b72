"""A typed task schedule for the continual-learning lab: "ABAC" with one segment length, or explicit
lengths "A128 B64 A200" (a URL carries it as text; nested.continual streams it)."""

from __future__ import annotations

from dataclasses import dataclass

MAX_TOKENS = 4096  # a lab's stream; bounds a session's memory (attention caches grow with it)
MAX_SEGMENT = 1024
TEXT_TASK = "T"  # the user's own text as a segment of the stream


@dataclass(frozen=True)
class Schedule:
    """A typed schedule: "ABAC" with one segment length, or explicit lengths "A128 B64 A200"."""

    segments: tuple[tuple[str, int], ...]

    @classmethod
    def parse(cls, text: str, tasks: list[str], segment_len: int = 128, allow_text: bool = False) -> Schedule:
        """Raises ValueError with a sentence a user can act on (bad letter, length, total)."""
        if not isinstance(text, str) or not text.strip():
            raise ValueError("the schedule is empty: type task letters such as ABAC")
        allowed = list(tasks) + ([TEXT_TASK] if allow_text else [])
        items = text.replace(",", " ").split() if any(ch.isdigit() for ch in text) else list(text.replace(" ", ""))
        out = []
        for item in items:
            letter, digits = item[:1].upper(), item[1:]
            if letter not in allowed:
                raise ValueError(f"{letter!r} is not a task here: use {', '.join(allowed)}")
            if digits and not digits.isdigit():
                raise ValueError(f"cannot read {item!r}: write a letter, optionally followed by a length (A128)")
            n = int(digits) if digits else segment_len
            if not 1 <= n <= MAX_SEGMENT:
                raise ValueError(f"segment {item!r}: a segment is 1 to {MAX_SEGMENT} tokens")
            out.append((letter, n))
        total = sum(n for _, n in out)
        if total > MAX_TOKENS:
            raise ValueError(f"the schedule is {total:,} tokens; a lab streams at most {MAX_TOKENS:,}")
        return cls(tuple(out))

    def __str__(self) -> str:
        return " ".join(f"{t}{n}" for t, n in self.segments)

    def bounds(self) -> list[tuple[str, int, int]]:
        """(task, first token, end token) of every segment."""
        out, pos = [], 0
        for t, n in self.segments:
            out.append((t, pos, pos + n))
            pos += n
        return out
