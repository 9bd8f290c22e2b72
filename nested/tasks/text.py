"""Text tasks: the offline English corpus (Python's own pydoc_data.topics) or any user text, and the
paper's "learn a new language in context" experiment in small (PAPER.md §8.2, §9 E6): a random letter
cipher plus a word reordering over base text, learned from examples and then used to translate."""

from __future__ import annotations

import re
from functools import lru_cache

import torch
from torch import Tensor

from nested.tasks.base import IGNORE, Batch, Task, encode, lm_batch, rng


@lru_cache(maxsize=1)
def pydoc_corpus() -> bytes:
    from pydoc_data.topics import topics

    return "\n\n".join(" ".join(topics[k].split()) for k in sorted(topics)).encode("utf-8")


def split_corpus(data: bytes, split: str, val_fraction: float = 0.1) -> bytes:
    cut = int(len(data) * (1 - val_fraction))
    return data[:cut] if split == "train" else data[cut:]


MAX_TEXT_BYTES = 1_000_000  # a user text larger than this is refused (the app cuts to less, with a note)


class TextTask(Task):
    """Random windows of a byte corpus; every position is scored (next byte). `text`: train on this text
    instead (all of it; no held-out split), validated: non-empty, long enough for one window, at most
    MAX_TEXT_BYTES."""

    name = "text"

    def __init__(self, seq_len: int = 128, split: str = "train", text: str | bytes | None = None):
        data = pydoc_corpus() if text is None else (text.encode("utf-8") if isinstance(text, str) else text)
        self.data = split_corpus(data, split) if text is None else data
        if text is not None and not data.strip():
            raise ValueError("the text is empty")
        if len(self.data) > MAX_TEXT_BYTES:
            raise ValueError(f"the text is {len(self.data):,} bytes; training takes at most {MAX_TEXT_BYTES:,}")
        if len(self.data) < seq_len + 2:
            raise ValueError(
                f"the text is too short ({len(self.data)} bytes) for sequences of {seq_len}: "
                f"it needs at least {seq_len + 2} bytes"
            )
        self.seq_len = seq_len
        self._tensor = torch.tensor(list(self.data), dtype=torch.long)

    def sample(self, batch_size: int, seed: int) -> Batch:
        starts = torch.randint(0, len(self.data) - self.seq_len - 1, (batch_size,), generator=rng(seed))
        x = torch.stack([self._tensor[s : s + self.seq_len + 1] for s in starts.tolist()])
        return Batch(x[:, :-1].clone(), x[:, 1:].clone())

    def solve(self, inputs: Tensor) -> Tensor:
        """The oracle knows the corpus: find each window in it and read the following bytes."""
        out = torch.full_like(inputs, IGNORE)
        for i, row in enumerate(inputs.tolist()):
            at = self.data.find(bytes(row))
            if at >= 0:
                nxt = self.data[at + 1 : at + 1 + len(row)]
                out[i, : len(nxt)] = torch.tensor(list(nxt))
        return out


WORD = re.compile(rb"[a-z]{3,7}")


@lru_cache(maxsize=1)
def base_words() -> list[str]:
    words = sorted({w.decode() for w in WORD.findall(pydoc_corpus().lower())})
    return words


class NewLanguageTask(Task):
    """Sequences of `n_examples` lines "english=foreign;" then a test line whose foreign side is scored.
    foreign = each letter through a random permutation of a-z, then the word order reversed. Fresh
    rules per sequence, so the language must be learned in context. Test words all occur in the
    examples, so the language is fully determined by the sequence (the oracle scores 100%)."""

    name = "new-language"
    answers = list(range(ord("a"), ord("z") + 1)) + [ord(" "), ord(";")]

    def __init__(self, n_examples: int = 6, words_per_line: int = 3, reorder: bool = True):
        self.n_examples, self.k, self.reorder = n_examples, words_per_line, reorder

    def _translate(self, words: list[str], table: dict[str, str]) -> str:
        out = ["".join(table[c] for c in w) for w in words]
        return " ".join(out[::-1] if self.reorder else out)

    def _sequence(self, g: torch.Generator) -> tuple[list[int], int]:
        vocab = base_words()
        perm = torch.randperm(26, generator=g).tolist()
        table = {chr(97 + i): chr(97 + p) for i, p in enumerate(perm)}
        lines, seen = [], []
        for _ in range(self.n_examples):
            words = [vocab[int(i)] for i in torch.randint(0, len(vocab), (self.k,), generator=g)]
            seen += words
            lines.append(f"{' '.join(words)}={self._translate(words, table)};")
        test = [seen[int(i)] for i in torch.randint(0, len(seen), (self.k,), generator=g)]
        prompt = "".join(lines) + " ".join(test) + "="
        answer = self._translate(test, table) + ";"
        return encode(prompt + answer), len(encode(prompt)) - 1

    def sample(self, batch_size: int, seed: int) -> Batch:
        g = rng(seed)
        seqs = [self._sequence(g) for _ in range(batch_size)]
        L = max(len(s) for s, _ in seqs)
        padded = [[32] * (L - len(s)) + s for s, _ in seqs]  # left-pad with spaces
        starts = [L - len(s) + st for s, st in seqs]
        return lm_batch(padded, score_from=starts)

    def solve(self, inputs: Tensor) -> Tensor:
        out = torch.full_like(inputs, IGNORE)
        for i, row in enumerate(inputs.tolist()):
            text = bytes(row).decode("utf-8", "replace")
            head, _, partial = text.rpartition("=")
            body, _, test_src = head.rpartition(";")
            pairs = [ln.split("=") for ln in (body + ";").split(";") if "=" in ln]
            table: dict[str, str] = {}
            for src, dst in pairs:
                s_words, d_words = src.strip().split(), dst.split()
                d_words = d_words[::-1] if self.reorder else d_words
                for sw, dw in zip(s_words, d_words, strict=False):
                    table.update(zip(sw, dw, strict=False))
            answer = self._translate(test_src.strip().split(), table) + ";"
            start = len(row) - len(partial) - 1  # position of the "=" that precedes the answer
            full = encode(answer)
            for j, tok in enumerate(full):
                if start + j < len(row):
                    out[i, start + j] = tok
        return out
