"""Readable probe text from byte-level tokens whose boundaries cut through UTF-8 characters.

SmolLM2 splits "Столица" as b"\\xd0" + b"\\xa1толица": each token alone is not
valid UTF-8, so shown one by one they read "\\xd0\\xa1толица". Here every
character is decoded from the joined bytes and given to the token its first byte
lies in, so the probe reads "Столица" while each token keeps its own colour and
can still be selected. Bytes that never form a character stay visible as \\xNN
(never U+FFFD).
"""

from __future__ import annotations

import bisect

from lorascope.protocol.tokens import display_token

_CONTROL_NAMES = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _utf8_length(lead: int) -> int:
    if lead < 0x80:
        return 1
    if 0xC2 <= lead <= 0xDF:
        return 2
    if 0xE0 <= lead <= 0xEF:
        return 3
    if 0xF0 <= lead <= 0xF4:
        return 4
    return 0  # a continuation byte or an invalid lead: not the start of a character


def _shown(ch: str) -> str:
    if ch in _CONTROL_NAMES:
        return _CONTROL_NAMES[ch]
    return ch if ch.isprintable() or ch == " " else f"\\x{ord(ch):02x}"


def probe_token_texts(token_bytes: list[bytes]) -> list[str]:
    """One display string per token; joined, they read as the decoded probe text."""
    data = b"".join(token_bytes)
    starts, offset = [], 0
    for chunk in token_bytes:
        starts.append(offset)
        offset += len(chunk)
    texts = [""] * len(token_bytes)
    pos = 0
    while pos < len(data):
        owner = bisect.bisect_right(starts, pos) - 1
        length = _utf8_length(data[pos])
        piece = data[pos : pos + length] if length else b""
        try:
            ch = piece.decode("utf-8") if length and len(piece) == length else None
        except UnicodeDecodeError:
            ch = None
        if ch is None:
            texts[owner] += f"\\x{data[pos]:02x}"
            pos += 1
        else:
            texts[owner] += _shown(ch)
            pos += length
    return texts


def incomplete_tail(token_bytes: list[bytes]) -> bytes:
    """The trailing bytes of the joined tokens that start a character not yet finished (b"" if none)."""
    data = b"".join(token_bytes)
    for back in range(1, min(4, len(data)) + 1):
        lead = data[-back]
        length = _utf8_length(lead)
        if length:
            return data[-back:] if length > back else b""
        if lead < 0x80 or lead >= 0xC0:
            return b""
    return b""


def completion_label(tail: bytes, token: bytes, fallback: str = "") -> str:
    """A candidate next token, shown from its bytes; if it completes the probe's unfinished
    character, the finished text follows an arrow: '\\x92'→В."""
    shown = display_token(token, fallback)
    if tail and token:
        joined = tail + token
        try:
            text = joined.decode("utf-8")
        except UnicodeDecodeError:
            return shown
        return f"{shown}→{''.join(_shown(c) for c in text.strip()) or text}"
    return shown
