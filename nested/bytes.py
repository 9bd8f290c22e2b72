"""Byte tokenisation, the one place it is written: text <-> token ids (vocabulary 256, UTF-8)."""

from __future__ import annotations

import torch

_SHOWN = {10: "⏎", 9: "⇥", 32: "␣"}  # bytes a strip would otherwise show as nothing


def encode_bytes(text: str, limit: int | None = None) -> list[int]:
    """The UTF-8 bytes of `text` (unencodable characters replaced), at most `limit` of them."""
    data = text.encode("utf-8", errors="replace")
    return list(data[:limit] if limit is not None else data)


def encode_text(text: str, limit: int | None = None) -> torch.Tensor:
    """(1, T) int64 byte tokens of a text."""
    return torch.tensor(encode_bytes(text, limit), dtype=torch.long)[None]


def decode_bytes(tokens) -> str:
    """Token ids back to text (a partial UTF-8 sequence becomes U+FFFD)."""
    return bytes(int(t) for t in tokens).decode("utf-8", errors="replace")


def decode_token(tok: int) -> str:
    """One byte shown as a readable character: space, newline and tab as visible marks, other control
    bytes and partial UTF-8 as escapes."""
    if tok in _SHOWN:
        return _SHOWN[tok]
    if 32 < tok < 127:
        return chr(tok)
    return f"\\x{tok:02x}"
