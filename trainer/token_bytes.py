"""The exact bytes of one token, so a client can show partial UTF-8 legibly.

A lossy `tokenizer.decode([id])` turns half a Cyrillic letter into U+FFFD; the
bytes are recoverable from the token's vocabulary string instead:

- byte-level BPE (GPT-2, Llama 3, Qwen, SmolLM2) spells each byte as one printable
  character (`bytes_to_unicode`): 'ĠÐ' -> b' \\xd0';
- sentencepiece spells a space as '▁' and unknown bytes as '<0xNN>' (byte fallback):
  '▁x' -> b' x', '<0xD0>' -> b'\\xd0';
- added / special tokens ('<|im_end|>') are their own text.

Clients render the bytes with `lorascope.protocol.tokens.display_token`.
"""

from __future__ import annotations

import re
import weakref
from functools import lru_cache

_BYTE_FALLBACK = re.compile(r"<0x([0-9A-Fa-f]{2})>")

# tokenizer -> "byte_level" | "sentencepiece" | "plain"; computed once per tokenizer
_STYLE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


@lru_cache(maxsize=1)
def _unicode_to_byte() -> dict[str, int]:
    """Inverse of GPT-2's bytes_to_unicode: printable stand-in character -> byte value."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    n = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(printable, chars)}


def _style(tokenizer) -> str:
    try:
        return _STYLE[tokenizer]
    except (KeyError, TypeError):
        pass
    style = "plain"
    backend = getattr(tokenizer, "backend_tokenizer", None)
    description = ""
    if backend is not None:
        description = f"{backend.decoder} {backend.pre_tokenizer} {backend.model.__class__.__name__}"
    if "ByteLevel" in description:
        style = "byte_level"
    elif "ByteFallback" in description or "Metaspace" in description or "▁" in description:
        style = "sentencepiece"
    elif backend is None and hasattr(tokenizer, "sp_model"):
        style = "sentencepiece"
    elif backend is None and hasattr(tokenizer, "byte_decoder"):
        style = "byte_level"
    try:
        _STYLE[tokenizer] = style
    except TypeError:
        pass
    return style


def _added_tokens(tokenizer) -> dict:
    return getattr(tokenizer, "added_tokens_decoder", None) or {}


def token_bytes(tokenizer, token_id: int) -> bytes:
    """The exact bytes token `token_id` stands for (b' \\xd0' for SmolLM2's 'ĠÐ')."""
    token_id = int(token_id)
    added = _added_tokens(tokenizer).get(token_id)
    if added is not None:
        return str(added).encode("utf-8")
    piece = tokenizer.convert_ids_to_tokens(token_id)
    if piece is None:
        return b""
    style = _style(tokenizer)
    if style == "byte_level":
        table = _unicode_to_byte()
        if all(ch in table for ch in piece):
            return bytes(table[ch] for ch in piece)
        return piece.encode("utf-8")  # an added token the decoder map does not cover
    if style == "sentencepiece":
        match = _BYTE_FALLBACK.fullmatch(piece)
        if match:
            return bytes([int(match.group(1), 16)])
        return piece.replace("▁", " ").encode("utf-8")
    # WordPiece and friends: the decode of one token is as exact as it gets
    return tokenizer.decode([token_id]).encode("utf-8")


def token_text(tokenizer, token_id: int) -> str:
    """A legible one-line form of the token: text where the bytes are UTF-8, \\xNN where not."""
    from lorascope.protocol.tokens import display_token

    return display_token(token_bytes(tokenizer, token_id))
