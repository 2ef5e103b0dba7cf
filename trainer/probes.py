"""Probe prompts: fixed texts on which the logit-shift observer compares base and tuned.

They come from a file the user gives (`--probes FILE`), or from the defaults in
`trainer/data/probes.json` plus the first few held-out examples. A probe file is
JSON — `{"probes": [{"id", "text", "chat"?}, ...], "anchors": [" Paris", ...]}`
or a bare list of probes — or JSONL, one probe per line (a line
`{"anchors": [...]}` adds anchors). `chat: true` wraps the text as a user turn
with the model's chat template (with the generation prompt), so an instruct model
is probed the way it is trained.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from lorascope.protocol.errors import UserError, read_user_text

from .token_bytes import token_bytes

DEFAULT_PROBES_FILE = Path(__file__).parent / "data" / "probes.json"
HELDOUT_PROBES = 2  # held-out examples added to the default probes
# A logit-shift frame carries top-k and anchors for every position (~60 bytes per
# token entry): with the defaults a frame is ~100 kB, so probes stay short.
HELDOUT_MAX_TOKENS = 32


@dataclass
class Probe:
    probe_id: str
    text: str
    token_ids: list[int]


class ProbeSet:
    """The probes of a run, tokenized once, and the anchor token strings to track."""

    def __init__(self, probes: list[Probe], anchors: list[str] | None = None):
        self.probes = list(probes)
        self.anchors = list(anchors or [])
        self._by_id = {p.probe_id: p for p in self.probes}

    def get(self, probe_id: str) -> Probe:
        return self._by_id[probe_id]  # KeyError: the caller names the probe in its message

    def __len__(self) -> int:
        return len(self.probes)

    def __iter__(self):
        return iter(self.probes)

    @property
    def ids(self) -> list[str]:
        return [p.probe_id for p in self.probes]

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_file(cls, path, tokenizer) -> "ProbeSet":
        """Read a JSON or JSONL probe file; UserError naming file, line and field on bad input."""
        path = Path(path)
        text = read_user_text(path, "probe file")
        entries, anchors = _parse_probe_file(path, text)
        probes: list[Probe] = []
        seen: dict[str, str] = {}
        for where, entry in entries:
            probe = _make_probe(where, entry, tokenizer, len(probes))
            if probe.probe_id in seen:
                raise UserError(f"{where}: probe id {probe.probe_id!r} repeats the one at {seen[probe.probe_id]}")
            seen[probe.probe_id] = where
            probes.append(probe)
        if not probes:
            raise UserError(f"{path}: no probes in the file")
        for where, anchor in anchors:
            ids = tokenizer(anchor, add_special_tokens=False)["input_ids"]
            if len(ids) != 1:
                pieces = [tokenizer.convert_ids_to_tokens(i) for i in ids]
                raise UserError(
                    f"{where}: anchor {anchor!r} is {len(ids)} tokens {pieces} for this tokenizer, not one"
                )
        return cls(probes, [a for _, a in anchors])

    @classmethod
    def default(cls, tokenizer, heldout_texts: list[str] | None = None) -> "ProbeSet":
        """The packaged default probes, plus the first few held-out examples (truncated)."""
        text = DEFAULT_PROBES_FILE.read_text(encoding="utf-8")
        entries, anchors = _parse_probe_file(DEFAULT_PROBES_FILE, text)
        probes = [_make_probe(where, entry, tokenizer, i) for i, (where, entry) in enumerate(entries)]
        for i, heldout in enumerate((heldout_texts or [])[:HELDOUT_PROBES]):
            if not heldout or not heldout.strip():
                continue
            ids = _cut_at_character(tokenizer, tokenizer(heldout, add_special_tokens=True)["input_ids"][:HELDOUT_MAX_TOKENS])
            text = b"".join(token_bytes(tokenizer, i) for i in ids).decode("utf-8", errors="replace")
            probes.append(Probe(f"heldout-{i}", text, list(ids)))
        # Default anchors are a convenience: keep the ones this tokenizer has as one token.
        single = [a for _, a in anchors if len(tokenizer(a, add_special_tokens=False)["input_ids"]) == 1]
        return cls(probes, single)


def _cut_at_character(tokenizer, ids: list[int]) -> list[int]:
    """Drop trailing tokens that end inside a UTF-8 character (a cut can split a Cyrillic letter)."""
    for end in range(len(ids), 0, -1):
        try:
            b"".join(token_bytes(tokenizer, i) for i in ids[:end]).decode("utf-8")
            return ids[:end]
        except UnicodeDecodeError:
            continue
    return ids


def _parse_probe_file(path: Path, text: str) -> tuple[list[tuple[str, dict]], list[tuple[str, str]]]:
    """(where, entry) pairs for the probes and (where, anchor) for the anchors, where = 'file:line' or 'file: field'."""
    entries: list[tuple[str, dict]] = []
    anchors: list[tuple[str, str]] = []
    if not _looks_like_jsonl(text):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
        if isinstance(data, list):
            data = {"probes": data}
        if not isinstance(data, dict):
            raise UserError(f"{path}: expected an object with 'probes' or a list of probes")
        probes = data.get("probes")
        if not isinstance(probes, list):
            raise UserError(f"{path}: field 'probes' must be a list of {{\"id\", \"text\"}} objects")
        for i, entry in enumerate(probes):
            entries.append((f"{path}: probes[{i}]", entry))
        for i, anchor in enumerate(_anchor_list(f"{path}: anchors", data.get("anchors", []))):
            anchors.append((f"{path}: anchors[{i}]", anchor))
        return entries, anchors
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{where}: not valid JSON ({exc.msg})") from None
        if isinstance(entry, dict) and "anchors" in entry and "text" not in entry:
            anchors.extend((where, a) for a in _anchor_list(f"{where}: anchors", entry["anchors"]))
            continue
        entries.append((where, entry))
    return entries, anchors


def _looks_like_jsonl(text: str) -> bool:
    """JSONL when the first non-empty line is a whole JSON object by itself and more lines follow."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if len(lines) < 2:
        return False
    try:
        return isinstance(json.loads(lines[0]), dict)
    except json.JSONDecodeError:
        return False


def _anchor_list(where: str, value) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(a, str) and a for a in value):
        raise UserError(f"{where}: must be a list of non-empty token strings, e.g. [\" Paris\"]")
    return value


def _make_probe(where: str, entry, tokenizer, index: int) -> Probe:
    if not isinstance(entry, dict):
        raise UserError(f"{where}: a probe must be an object with 'text' (and 'id'), got {type(entry).__name__}")
    text = entry.get("text")
    if not isinstance(text, str) or not text.strip():
        raise UserError(f"{where}: field 'text' must be a non-empty string")
    probe_id = entry.get("id", entry.get("probe_id", f"probe-{index}"))
    if not isinstance(probe_id, str) or not probe_id:
        raise UserError(f"{where}: field 'id' must be a non-empty string")
    chat = entry.get("chat", False)
    if not isinstance(chat, bool):
        raise UserError(f"{where}: field 'chat' must be true or false")
    if chat:
        if not getattr(tokenizer, "chat_template", None):
            raise UserError(f"{where}: probe {probe_id!r} asks for the chat template, but the tokenizer has none")
        ids = tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True
        )
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        token_ids = [int(i) for i in ids]
        text = tokenizer.decode(token_ids, skip_special_tokens=False)
    else:
        token_ids = [int(i) for i in tokenizer(text, add_special_tokens=True)["input_ids"]]
    if not token_ids:
        raise UserError(f"{where}: probe {probe_id!r} tokenizes to nothing")
    return Probe(probe_id, text, token_ids)
