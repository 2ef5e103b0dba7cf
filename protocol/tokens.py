"""Showing tokens legibly. Byte-level BPE tokens can be partial UTF-8 (SmolLM2's top
token after "Столица Франции —" is half a Cyrillic letter), so a client renders a
token from its exact bytes, never from a lossy decode that would print U+FFFD."""

from __future__ import annotations

_CONTROL_NAMES = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def display_token(token_bytes: bytes, fallback: str = "") -> str:
    """A one-line, legible form of a token: valid UTF-8 as text, stray bytes as \\xNN.

    >>> display_token(" Paris".encode())
    ' Paris'
    >>> display_token(b" \\xd0")
    ' \\\\xd0'
    """
    if not token_bytes:
        return fallback
    text = token_bytes.decode("utf-8", errors="backslashreplace")
    return "".join(_CONTROL_NAMES.get(ch, ch if ch.isprintable() or ch == " " else f"\\x{ord(ch):02x}") for ch in text)
