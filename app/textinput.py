"""Turning whatever a user pastes or uploads into text a byte-level model can stream, with clear
messages: any encoding, no binaries, no control characters, a size limit."""

from __future__ import annotations

import unicodedata

MAX_UPLOAD_BYTES = 1_000_000  # refused above this, before decoding
MAX_STREAM_BYTES = 2_000  # the stepper streams at most this much (the rest is cut, with a warning)


class TextInputError(ValueError):
    """Input that cannot be used; the message is meant for the user."""


def decode_bytes(raw: bytes) -> str:
    """The text of an upload (see `decode_upload`)."""
    return decode_upload(raw)[0]


def decode_upload(raw: bytes) -> tuple[str, str]:
    """(text, the encoding it was read in): UTF-8 (with or without BOM), UTF-16 with a BOM, a multi-byte
    East Asian encoding when charset-normalizer finds one (Shift-JIS, GBK, Big5, EUC-KR...), else
    Windows-1252. Binary data (NUL bytes or mostly non-text) is refused."""
    if len(raw) > MAX_UPLOAD_BYTES:
        raise TextInputError(f"the file is {len(raw) / 1e6:.1f} MB; the limit is {MAX_UPLOAD_BYTES / 1e6:.0f} MB")
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return raw.decode("utf-16"), "UTF-16"
    if b"\x00" in raw[:4096]:
        raise TextInputError("this looks like a binary file (it contains NUL bytes), not text")
    try:
        return raw.decode("utf-8-sig"), "UTF-8"
    except UnicodeDecodeError:
        pass
    # single-byte code pages all decode anything, and a guess among them on a short text is unreliable
    # (charset-normalizer reads French cp1252 as cp1250): only a multi-byte guess overrides Windows-1252
    import charset_normalizer

    best = charset_normalizer.from_bytes(raw[:65536]).best()
    if best is not None and best.encoding.replace("_", "").lower() in MULTIBYTE:
        text, encoding = raw.decode(best.encoding, errors="replace"), best.encoding
    else:
        text, encoding = raw.decode("cp1252", errors="replace"), "Windows-1252"
    printable = sum(ch.isprintable() or ch in "\n\t\r" for ch in text[:4096])
    if printable < 0.9 * min(len(text), 4096):
        raise TextInputError("this does not look like text (too many unprintable bytes)")
    return text, encoding


MULTIBYTE = {"cp932", "shiftjis", "shiftjis2004", "shiftjisx0213", "eucjp", "iso2022jp", "gb2312", "gbk", "gb18030",
             "big5", "big5hkscs", "cp950", "euckr", "cp949", "johab", "hz"}  # fmt: skip


def clean_text(text: str, limit: int = MAX_STREAM_BYTES, what: str = "the stepper") -> tuple[str, list[str]]:
    """Drop control characters (keep newlines and tabs), normalise to NFC, cut to `limit` UTF-8 bytes
    (never inside a character). Returns the text and the warnings to show."""
    notes = []
    kept = "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch)[0] != "C")
    if len(kept) != len(text):
        notes.append(f"removed {len(text) - len(kept)} control characters")
    kept = unicodedata.normalize("NFC", kept)
    data = kept.encode("utf-8")
    if len(data) > limit:
        kept = data[:limit].decode("utf-8", errors="ignore")
        notes.append(f"the text is {len(data):,} bytes; {what} streams the first {limit:,}")
    if not kept.strip():
        raise TextInputError("the text is empty")
    return kept, notes
