"""Typed text in the link: a shared URL reopens the same stream (issue: links that reproduce).

The text travels compressed (zlib, then URL-safe base64, prefixed "z") in the parameter `<key>_z`, so a
few kilobytes of prose fit in a link; past MAX_LINK_CHARS of encoded text the link carries no text and the
page says so (a saved trace, from the stepper's Export panel, carries any length). A parameter that does
not decode is named in a notice and the default text is used: a bad link never raises.
"""

from __future__ import annotations

import base64
import binascii
import zlib

import streamlit as st

from app.urlstate import ignored_from_link

MAX_LINK_CHARS = 4000  # of encoded text: with the rest of the query, under the ~8 KB most servers accept
MAX_DECODED_BYTES = 1_000_000  # a link cannot inflate past what a page accepts


def encode_link_text(text: str) -> str:
    raw = zlib.compress(text.encode("utf-8"), 9)
    return "z" + base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_link_text(value: str) -> str:
    """The text of `encode_link_text(text)`; ValueError with a reason for anything else."""
    if not value.startswith("z"):
        raise ValueError("not a text encoded by this app")
    body = value[1:]
    try:
        raw = base64.b64decode(body + "=" * (-len(body) % 4), altchars=b"-_", validate=True)
        inflater = zlib.decompressobj()
        data = inflater.decompress(raw, MAX_DECODED_BYTES + 1)
    except (binascii.Error, ValueError, zlib.error):
        raise ValueError("the text is damaged (cut or mistyped)") from None
    if len(data) > MAX_DECODED_BYTES or inflater.unconsumed_tail:
        raise ValueError(f"the text is over {MAX_DECODED_BYTES:,} bytes")
    if not inflater.eof:
        raise ValueError("the text is cut short")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("the text is not UTF-8") from None


def param_name(key: str) -> str:
    return f"{key}_z"


def linked_text_area(label: str, key: str, default: str = "", **kw) -> str:
    """st.text_area whose text is kept in the URL (compressed). Returns the current text."""
    name = param_name(key)
    if key not in st.session_state:  # first draw in this session: the link's text, if it has one
        st.session_state[key] = default
        if name in st.query_params:
            try:
                st.session_state[key] = decode_link_text(st.query_params[name])
            except ValueError as exc:
                ignored_from_link(f"{name} ({exc}); showing the default text")
    text = st.text_area(label, key=key, **kw)
    encoded = encode_link_text(text) if text != default else None
    if encoded is None or len(encoded) > MAX_LINK_CHARS:
        if name in st.query_params:
            del st.query_params[name]
        if encoded is not None:
            st.caption(f"This text is too long to travel in a link ({len(text.encode('utf-8')):,} bytes, "
                       f"{len(encoded):,} characters compressed; a link carries up to {MAX_LINK_CHARS:,}): a shared "
                       "link opens with the default text. Export a trace to share it.")  # fmt: skip
    elif st.query_params.get(name) != encoded:
        st.query_params[name] = encoded
    return text
