"""Read a training file in any supported format, tokenize it, and batch it.

Formats (detected from the file, not from flags):
    plain   `.txt` (examples separated by a blank line) or JSONL `{"text": ...}`; loss on every token
    alpaca  JSONL `{"instruction", "input"?, "output"}`; loss on the answer only
    chat    JSONL `{"messages": [{"role", "content"}, ...]}`; loss on the assistant turns only
A `.json` file holding a list of such records works too.

With the chat template on (the default), alpaca and chat records are rendered with
the tokenizer's chat template; off, as "Question: …\nAnswer: …". A malformed record
is a UserError naming `file:line` and what is wrong.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path

from lorascope.protocol.errors import UserError, read_user_text

DATA_DIR = Path(__file__).parent / "data"
DEFAULT_DATASET = DATA_DIR / "sample_en_ru.chat.jsonl"
IGNORE = -100  # label of a token that carries no loss
FORMATS = ("plain", "alpaca", "chat")


@dataclass
class Example:
    """One tokenized training example. `example_id` is its index in the file: stable across runs."""

    example_id: int
    text: str  # plain rendering, for spike snippets and held-out probes
    input_ids: list[int]
    labels: list[int]
    truncated: bool = False

    @property
    def loss_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE)


@dataclass
class TrainingData:
    path: str
    format: str
    examples: list[Example]
    heldout: list[Example] = field(default_factory=list)  # not trained on; their texts seed default probes
    n_records: int = 0
    n_truncated: int = 0
    n_dropped: int = 0  # nothing left to learn after truncation (the prompt filled max_length)
    max_length: int = 0

    def __len__(self) -> int:
        return len(self.examples)

    def get(self, example_id: int) -> Example | None:
        return self._by_id().get(example_id)

    def snippet(self, example_id: int, limit: int = 160) -> str:
        example = self.get(example_id)
        if example is None:
            return ""
        text = " ".join(example.text.split())
        return text if len(text) <= limit else text[: limit - 1] + "…"

    def summary(self) -> dict:
        """The dataset part of RunStart."""
        path = Path(self.path)
        shown = f"embedded:{path.name}" if path.resolve().parent == DATA_DIR.resolve() else self.path
        return {
            "path": shown,
            "format": self.format,
            "n_records": self.n_records,
            "n_examples": len(self.examples),
            "n_heldout": len(self.heldout),
            "n_truncated": self.n_truncated,
            "n_dropped": self.n_dropped,
            "max_length": self.max_length,
            "tokens": sum(len(e.input_ids) for e in self.examples),
            "loss_tokens": sum(e.loss_tokens for e in self.examples),
        }

    def _by_id(self) -> dict[int, Example]:
        if not hasattr(self, "_index"):
            self._index = {e.example_id: e for e in self.examples + self.heldout}
        return self._index


# --------------------------------------------------------------------------- reading
def read_records(path: str | Path) -> tuple[str, list[tuple[int, dict]]]:
    """(format, [(line number, record)]) with every record checked against the detected format."""
    path = Path(path)
    text = read_user_text(path, "dataset file")
    if path.suffix == ".txt":
        return "plain", _plain_paragraphs(text)
    rows = _json_rows(path, text)
    if not rows:
        raise UserError(f"{path}: no records in the file")
    fmt = _record_format(path, *rows[0])
    for line, record in rows:
        _check_record(path, line, record, fmt)
    return fmt, rows


def _plain_paragraphs(text: str) -> list[tuple[int, dict]]:
    rows: list[tuple[int, dict]] = []
    current: list[str] = []
    start = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            if not current:
                start = number
            current.append(line)
        elif current:
            rows.append((start, {"text": "\n".join(current)}))
            current = []
    if current:
        rows.append((start, {"text": "\n".join(current)}))
    return rows


def _json_rows(path: Path, text: str) -> list[tuple[int, dict]]:
    stripped = text.lstrip()
    if path.suffix == ".json" and stripped.startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from exc
        return [(i + 1, item) for i, item in enumerate(items)]
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append((number, json.loads(line)))
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}:{number}: invalid JSON: {exc.msg} (column {exc.colno})") from exc
    return rows


def _record_format(path: Path, line: int, record) -> str:
    if isinstance(record, dict):
        if "messages" in record:
            return "chat"
        if "instruction" in record and "output" in record:
            return "alpaca"
        if "text" in record:
            return "plain"
    keys = sorted(record) if isinstance(record, dict) else type(record).__name__
    raise UserError(
        f"{path}:{line}: cannot tell the format from {keys}; expected 'text', "
        "'instruction'+'output' (alpaca) or 'messages' (chat)"
    )


def _check_record(path: Path, line: int, record, fmt: str) -> None:
    where = f"{path}:{line}"
    if not isinstance(record, dict):
        raise UserError(f"{where}: expected a JSON object, got {type(record).__name__}")
    if fmt == "plain":
        if not isinstance(record.get("text"), str) or not record["text"].strip():
            raise UserError(f"{where}: 'text' must be a non-empty string (the file is plain text: {{\"text\": ...}})")
    elif fmt == "alpaca":
        for key in ("instruction", "output"):
            if not isinstance(record.get(key), str) or not record[key].strip():
                raise UserError(f"{where}: '{key}' must be a non-empty string (the file is alpaca format)")
        if not isinstance(record.get("input", ""), str):
            raise UserError(f"{where}: 'input' must be a string")
    else:
        messages = record.get("messages")
        if not isinstance(messages, list) or not messages:
            raise UserError(f"{where}: 'messages' must be a non-empty list (the file is chat format)")
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or not isinstance(message.get("content"), str):
                raise UserError(f"{where}: messages[{i}] needs a string 'content'")
            if message.get("role") not in ("system", "user", "assistant"):
                raise UserError(f"{where}: messages[{i}].role must be system, user or assistant, got {message.get('role')!r}")
        if not any(m["role"] == "assistant" for m in messages):
            raise UserError(f"{where}: no assistant message: nothing to learn")


# --------------------------------------------------------------------------- tokenizing
def load_dataset(path, tokenizer, *, max_length: int = 128, chat_template: bool = True, heldout: int = 0) -> TrainingData:
    """Read, tokenize and truncate `path`; the last `heldout` examples are kept out of training."""
    fmt, rows = read_records(path)
    if chat_template and fmt != "plain" and not getattr(tokenizer, "chat_template", None):
        chat_template = False  # a base model without a template: fall back to the plain Q/A rendering
    examples: list[Example] = []
    n_truncated = n_dropped = 0
    for example_id, (line, record) in enumerate(rows):
        messages = _as_messages(record, fmt)
        if messages is None:
            ids, labels = _tokenize_plain(record["text"], tokenizer)
            text = record["text"]
        elif chat_template:
            ids, labels = _tokenize_chat(messages, tokenizer)
            text = _plain_rendering(messages)
        else:
            text = _plain_rendering(messages)
            ids, labels = _tokenize_qa(messages, tokenizer)
        truncated = len(ids) > max_length
        ids, labels = ids[:max_length], labels[:max_length]
        n_truncated += truncated
        example = Example(example_id, text, ids, labels, truncated)
        if example.loss_tokens == 0:
            n_dropped += 1
            continue
        examples.append(example)
    heldout = max(0, min(heldout, len(examples) - 1))
    held = examples[len(examples) - heldout :] if heldout else []
    train = examples[: len(examples) - heldout]
    if not train:
        raise UserError(f"{path}: no example has a token to learn within max_length={max_length}")
    return TrainingData(str(path), fmt, train, held, len(rows), n_truncated, n_dropped, max_length)


def _as_messages(record: dict, fmt: str) -> list[dict] | None:
    if fmt == "plain":
        return None
    if fmt == "alpaca":
        prompt = record["instruction"] + (f"\n\n{record['input']}" if record.get("input") else "")
        return [{"role": "user", "content": prompt}, {"role": "assistant", "content": record["output"]}]
    return record["messages"]


def _plain_rendering(messages: list[dict]) -> str:
    parts = []
    for m in messages:
        label = {"user": "Question", "assistant": "Answer", "system": "System"}[m["role"]]
        parts.append(f"{label}: {m['content']}")
    return "\n".join(parts)


def _tokenize_plain(text: str, tokenizer) -> tuple[list[int], list[int]]:
    ids = tokenizer(text, add_special_tokens=True)["input_ids"]
    if tokenizer.eos_token_id is not None:
        ids = ids + [tokenizer.eos_token_id]  # learn where a document ends
    return ids, list(ids)


def _tokenize_chat(messages: list[dict], tokenizer) -> tuple[list[int], list[int]]:
    """Chat template over all turns; loss only on the characters of each assistant turn (and its end token)."""
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = tokenizer.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True) if i else ""
        through = tokenizer.apply_chat_template(messages[: i + 1], tokenize=False)
        spans.append((len(before), len(through)))
    return _label_spans(full, spans, tokenizer)


def _tokenize_qa(messages: list[dict], tokenizer) -> tuple[list[int], list[int]]:
    """The template-free rendering "Question: …\nAnswer: …", loss on the answers."""
    full, spans = "", []
    for m in messages:
        label = {"user": "Question", "assistant": "Answer", "system": "System"}[m["role"]]
        full += f"{label}:"
        if m["role"] == "assistant":
            spans.append((len(full), len(full) + 1 + len(m["content"]) + 1))
        full += f" {m['content']}\n"
    ids, labels = _label_spans(full.rstrip("\n"), spans, tokenizer)
    if tokenizer.eos_token_id is not None:
        ids, labels = ids + [tokenizer.eos_token_id], labels + [tokenizer.eos_token_id]
    return ids, labels


def _label_spans(text: str, spans: list[tuple[int, int]], tokenizer) -> tuple[list[int], list[int]]:
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(encoded["input_ids"])
    labels = []
    for token_id, (start, _end) in zip(ids, encoded["offset_mapping"]):
        inside = any(lo <= start < hi for lo, hi in spans)
        labels.append(token_id if inside else IGNORE)
    return ids, labels


# --------------------------------------------------------------------------- batching
def epoch_order(n: int, *, seed: int, epoch: int, shuffle: bool, order: list[int] | None = None) -> list[int]:
    """Positions of the examples for one epoch: a fixed order, the file order, or a seeded shuffle.

    Deterministic in (seed, epoch) so a resumed run sees the batches it would have seen.
    """
    if order is not None:
        return list(order)
    positions = list(range(n))
    if shuffle:
        random.Random(seed * 1_000_003 + epoch).shuffle(positions)
    return positions


def read_order(path, data: TrainingData) -> list[int]:
    """A curriculum order file (one example id per line, or JSON {"order": [...]}) as positions into `data`."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: order file not found")
    text = path.read_text(encoding="utf-8").strip()
    if text.startswith("{") or text.startswith("["):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from exc
        ids = obj.get("order") if isinstance(obj, dict) else obj
        if not isinstance(ids, list):
            raise UserError(f"{path}: expected a list of example ids or {{\"order\": [...]}}")
        where = [f"{path}: order[{i}]" for i in range(len(ids))]
    else:
        ids, where = [], []
        for number, line in enumerate(text.splitlines(), start=1):
            token = line.split()[0] if line.split() else ""
            if not token or token.startswith("#"):
                continue
            ids.append(token)
            where.append(f"{path}:{number}")
    position = {e.example_id: i for i, e in enumerate(data.examples)}
    result = []
    for w, raw in zip(where, ids):
        try:
            example_id = int(raw)
        except (TypeError, ValueError):
            raise UserError(f"{w}: {raw!r} is not an example id") from None
        if example_id in position:  # held-out or dropped ids are skipped, not an error
            result.append(position[example_id])
    if not result:
        raise UserError(f"{path}: none of its example ids are in {data.path}")
    return result


def collate(examples: list[Example], pad_id: int):
    """Right-padded tensors: input_ids, attention_mask, labels (IGNORE on padding), example_ids."""
    import torch

    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, e in enumerate(examples):
        n = len(e.input_ids)
        ids[row, :n] = torch.tensor(e.input_ids)
        labels[row, :n] = torch.tensor(e.labels)
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels,
            "example_ids": [e.example_id for e in examples]}


class BatchPlan:
    """Which examples each optimizer step trains on: epochs laid end to end, `per_step` examples a step.

    Step k takes positions [k·per_step, (k+1)·per_step) of the endless sequence of
    epoch orders, so a resumed run at step k picks up exactly where it left off.
    Under several processes each rank takes its own slice of every micro-batch.
    """

    def __init__(self, data: TrainingData, *, batch_size: int, grad_accum: int, seed: int, shuffle: bool,
                 order: list[int] | None = None, world: int = 1, rank: int = 0):
        self.data, self.batch_size, self.grad_accum = data, batch_size, grad_accum
        self.seed, self.shuffle, self.order = seed, shuffle, order
        self.world, self.rank = world, rank
        self.per_step = batch_size * grad_accum * world
        self._orders: dict[int, list[int]] = {}
        self.epoch_size = len(order) if order is not None else len(data.examples)

    def steps_for_epochs(self, epochs: float) -> int:
        return max(1, math.ceil(epochs * self.epoch_size / self.per_step))

    def epoch_at(self, step: int) -> float:
        """Epochs completed after `step` optimizer steps."""
        return step * self.per_step / self.epoch_size

    def micro_batches(self, step: int) -> list[list[Example]]:
        """This rank's micro-batches of optimizer step `step` (0-based)."""
        start = step * self.per_step
        positions = [self._position(start + i) for i in range(self.per_step)]
        batches = []
        for micro in range(self.grad_accum):
            chunk = positions[(micro * self.world + self.rank) * self.batch_size:][: self.batch_size]
            batches.append([self.data.examples[p] for p in chunk])
        return batches

    def _position(self, index: int) -> int:
        epoch, offset = divmod(index, self.epoch_size)
        if epoch not in self._orders:
            self._orders = {epoch: epoch_order(len(self.data.examples), seed=self.seed, epoch=epoch,
                                               shuffle=self.shuffle, order=self.order)}
        return self._orders[epoch][offset]
