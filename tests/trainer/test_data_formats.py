"""The dataset loader: format detection, answer-only loss, truncation counts, file:line errors, batch plans."""

from __future__ import annotations

import json

import pytest

from lorascope.protocol.errors import UserError
from lorascope.trainer.datasets import (
    DATA_DIR,
    IGNORE,
    BatchPlan,
    collate,
    load_dataset,
    read_order,
    read_records,
)


def _write(path, lines):
    path.write_text("\n".join(json.dumps(x, ensure_ascii=False) if not isinstance(x, str) else x for x in lines) + "\n",
                    encoding="utf-8")
    return path


@pytest.mark.parametrize("name, fmt", [
    ("sample_en_ru.txt", "plain"),
    ("sample_en_ru.text.jsonl", "plain"),
    ("sample_en_ru.alpaca.jsonl", "alpaca"),
    ("sample_en_ru.chat.jsonl", "chat"),
])
def test_sample_files_are_detected_and_hold_the_same_items(name, fmt):
    detected, rows = read_records(DATA_DIR / name)
    assert detected == fmt
    assert len(rows) == len(read_records(DATA_DIR / "sample_en_ru.chat.jsonl")[1])


def test_russian_variant_is_the_english_one_plus_twins():
    _, en = read_records(DATA_DIR / "sample_en.alpaca.jsonl")
    _, en_ru = read_records(DATA_DIR / "sample_en_ru.alpaca.jsonl")
    assert len(en_ru) == 2 * len(en) >= 300
    assert [r for _, r in en_ru[0::2]] == [r for _, r in en]
    assert any("Столица" in r["output"] for _, r in en_ru[1::2])


def test_sample_arithmetic_answers_are_correct():
    _, rows = read_records(DATA_DIR / "sample_en.alpaca.jsonl")
    checked = 0
    for _, r in rows:
        if r["instruction"].startswith("What is ") and r["instruction"][8].isdigit():
            a, op, b = r["instruction"][8:-1].split()
            value = {"+": int(a) + int(b), "-": int(a) - int(b), "×": int(a) * int(b)}[op]
            assert r["output"] == f"{a} {op} {b} = {value}."
            checked += 1
    assert checked >= 50


def test_chat_loss_covers_only_the_answer(embedded_tokenizer, tmp_path):
    path = _write(tmp_path / "c.jsonl", [{"messages": [
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "Paris."}]}])
    data = load_dataset(path, embedded_tokenizer, max_length=256)
    ex = data.examples[0]
    learned = embedded_tokenizer.decode([t for t in ex.labels if t != IGNORE])
    assert learned.startswith("Paris.") and "<|im_end|>" in learned
    assert "capital" not in learned
    assert "capital" in embedded_tokenizer.decode(ex.input_ids)
    assert data.format == "chat"


def test_alpaca_without_template_uses_question_answer(embedded_tokenizer, tmp_path):
    path = _write(tmp_path / "a.jsonl", [{"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"}])
    ex = load_dataset(path, embedded_tokenizer, chat_template=False).examples[0]
    assert embedded_tokenizer.decode(ex.input_ids).startswith("Question: Add the numbers.\n\n2 and 3\nAnswer: 5")
    assert embedded_tokenizer.decode([t for t in ex.labels if t != IGNORE]).strip().startswith("5")


def test_plain_text_learns_every_token_and_truncation_is_counted(embedded_tokenizer, tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("short one\n\n" + "many words " * 100 + "\n\nanother\nparagraph\n", encoding="utf-8")
    data = load_dataset(path, embedded_tokenizer, max_length=32)
    assert data.format == "plain" and len(data) == 3
    assert data.n_truncated == 1
    assert all(len(e.input_ids) <= 32 for e in data.examples)
    assert all(e.labels == e.input_ids for e in data.examples)
    assert data.examples[2].text == "another\nparagraph"
    assert data.summary()["n_truncated"] == 1


def test_prompt_longer_than_max_length_is_dropped_not_trained(embedded_tokenizer, tmp_path):
    path = _write(tmp_path / "a.jsonl", [
        {"instruction": "word " * 200, "output": "x"},
        {"instruction": "Say hi.", "output": "hi"},
    ])
    data = load_dataset(path, embedded_tokenizer, max_length=40)
    assert data.n_dropped == 1 and data.n_truncated == 1
    assert [e.example_id for e in data.examples] == [1]


@pytest.mark.parametrize("lines, message", [
    ([{"text": "ok"}, "{not json"], ":2: invalid JSON"),
    ([{"instruction": "a", "output": "b"}, {"instruction": "a"}], ":2: 'output' must be a non-empty string"),
    ([{"messages": [{"role": "user", "content": "hi"}, {"role": "bot", "content": "x"}]}], ":1: messages[1].role"),
    ([{"messages": [{"role": "user", "content": "hi"}]}], ":1: no assistant message"),
    ([{"prompt": "a", "completion": "b"}], ":1: cannot tell the format"),
    (["", {"text": "a"}, "", [1, 2]], ":4: expected a JSON object"),
])
def test_malformed_line_names_file_and_line(tmp_path, lines, message):
    path = _write(tmp_path / "bad.jsonl", lines)
    with pytest.raises(UserError) as err:
        read_records(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="dataset file not found"):
        read_records(tmp_path / "nope.jsonl")


def test_batch_plan_is_deterministic_and_resumable(embedded_tokenizer):
    data = load_dataset(DATA_DIR / "sample_en.text.jsonl", embedded_tokenizer, max_length=64, heldout=2)
    plan = BatchPlan(data, batch_size=4, grad_accum=2, seed=3, shuffle=True)
    again = BatchPlan(data, batch_size=4, grad_accum=2, seed=3, shuffle=True)
    ids = lambda p, s: [[e.example_id for e in mb] for mb in p.micro_batches(s)]
    assert ids(plan, 7) == ids(again, 7)
    first_epoch = [i for s in range(len(data) // 8) for mb in ids(plan, s) for i in mb]
    assert len(set(first_epoch)) == len(first_epoch)  # an epoch never repeats an example
    assert ids(plan, 0) != ids(BatchPlan(data, batch_size=4, grad_accum=2, seed=4, shuffle=True), 0)
    assert ids(BatchPlan(data, batch_size=4, grad_accum=1, seed=0, shuffle=False), 1) == [[4, 5, 6, 7]]
    # two ranks split every micro-batch between them
    r0 = BatchPlan(data, batch_size=2, grad_accum=1, seed=3, shuffle=True, world=2, rank=0)
    r1 = BatchPlan(data, batch_size=2, grad_accum=1, seed=3, shuffle=True, world=2, rank=1)
    assert set(ids(r0, 5)[0]).isdisjoint(ids(r1, 5)[0])


def test_order_file_and_collate(embedded_tokenizer, tmp_path):
    data = load_dataset(DATA_DIR / "sample_en.text.jsonl", embedded_tokenizer, max_length=64)
    order = tmp_path / "order.txt"
    order.write_text("# easiest first\n5 0.1\n3 0.2\n9999 0.3\n", encoding="utf-8")
    positions = read_order(order, data)
    assert [data.examples[p].example_id for p in positions] == [5, 3]
    (tmp_path / "bad.txt").write_text("5\nfive\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"bad.txt:2: 'five' is not an example id"):
        read_order(tmp_path / "bad.txt", data)
    batch = collate([data.examples[0], data.examples[1]], pad_id=embedded_tokenizer.pad_token_id)
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
    short = min(range(2), key=lambda i: len(data.examples[i].input_ids))
    n = len(data.examples[short].input_ids)
    assert (batch["labels"][short, n:] == IGNORE).all() and batch["attention_mask"][short, n:].sum() == 0
