"""ProbeSet files and the exact bytes of tokens."""

from __future__ import annotations

import pytest

from lorascope.protocol.errors import UserError
from lorascope.protocol.tokens import display_token
from lorascope.trainer.probes import ProbeSet
from lorascope.trainer.token_bytes import token_bytes


def test_json_and_jsonl_probe_files(tmp_path, embedded_tokenizer):
    json_file = tmp_path / "probes.json"
    json_file.write_text('{"probes": [{"id": "fr", "text": "The capital of France is"}, {"id": "q", "text": "Hi", "chat": true}], "anchors": [" Paris"]}')
    probes = ProbeSet.from_file(json_file, embedded_tokenizer)
    assert probes.ids == ["fr", "q"] and probes.anchors == [" Paris"]
    assert probes.get("fr").token_ids == embedded_tokenizer("The capital of France is")["input_ids"]
    assert "<|im_start|>assistant" in probes.get("q").text  # chat template with the generation prompt

    jsonl = tmp_path / "probes.jsonl"
    jsonl.write_text('{"id": "a", "text": "One"}\n\n{"text": "Two"}\n{"anchors": [" yes", " no"]}\n')
    probes = ProbeSet.from_file(jsonl, embedded_tokenizer)
    assert probes.ids == ["a", "probe-1"] and probes.anchors == [" yes", " no"]
    with pytest.raises(KeyError):
        probes.get("missing")


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"id": "a", "text": "One"}\n{"id": "b", "text": ""}\n', "probes.jsonl:2: field 'text'"),
        ('{"id": "a", "text": "One"}\n{"id": "a", "text": "Two"}\n', "probes.jsonl:2: probe id 'a' repeats"),
        ('{"id": "a", "text": "One"}\nnot json\n', "probes.jsonl:2: not valid JSON"),
        ('{"id": "a", "text": "One"}\n{"anchors": [" Москва"]}\n', "probes.jsonl:2: anchor ' Москва' is 6 tokens"),
        ('{"id": "a", "text": "One"}\n{"id": 3, "text": "x"}\n', "probes.jsonl:2: field 'id'"),
    ],
)
def test_bad_probe_files_name_file_line_and_field(tmp_path, embedded_tokenizer, content, message):
    path = tmp_path / "probes.jsonl"
    path.write_text(content)
    with pytest.raises(UserError) as info:
        ProbeSet.from_file(path, embedded_tokenizer)
    assert message in str(info.value)


def test_bad_json_probe_file(tmp_path, embedded_tokenizer):
    path = tmp_path / "p.json"
    path.write_text('{\n  "probes": [\n    {"text": "x"},\n  ]\n}\n')
    with pytest.raises(UserError, match=r"p.json:4: not valid JSON"):
        ProbeSet.from_file(path, embedded_tokenizer)
    path.write_text('{"probes": [{"text": "x", "chat": "yes"}]}')
    with pytest.raises(UserError, match=r"p.json: probes\[0\]: field 'chat'"):
        ProbeSet.from_file(path, embedded_tokenizer)
    with pytest.raises(UserError, match="not found"):
        ProbeSet.from_file(tmp_path / "missing.json", embedded_tokenizer)
    path.write_bytes('{"probes": [{"text": "Столица"}]}'.encode("cp1251"))
    with pytest.raises(UserError, match=r"p.json: not UTF-8 text"):
        ProbeSet.from_file(path, embedded_tokenizer)


def test_token_bytes_of_partial_utf8(embedded_tokenizer):
    """The token after 'Франции' starts with ' \\xd0': half a Cyrillic letter, kept as its exact byte."""
    ids = embedded_tokenizer("Столица Франции — Париж. <|im_end|>", add_special_tokens=False)["input_ids"]
    pieces = [token_bytes(embedded_tokenizer, i) for i in ids]
    assert b"".join(pieces).decode("utf-8") == "Столица Франции — Париж. <|im_end|>"
    assert b" \xd0" in pieces
    assert display_token(b" \xd0") == " \\xd0"
    assert token_bytes(embedded_tokenizer, embedded_tokenizer.convert_tokens_to_ids("ĠParis")) == b" Paris"


@pytest.mark.slow
def test_top_token_after_russian_prompt_is_partial_utf8(embedded_model):
    """SmolLM2's top next token after "Столица Франции —" is half a Cyrillic letter: b' \\xd0'."""
    import torch

    model, tokenizer, _ = embedded_model
    ids = tokenizer("Столица Франции —", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        top = int(model(input_ids=ids).logits[0, -1].argmax())
    raw = token_bytes(tokenizer, top)
    assert raw == b" \xd0"
    assert "\ufffd" not in display_token(raw)


def test_token_bytes_of_a_sentencepiece_style_tokenizer():
    """'▁' is a space and '<0xNN>' a raw byte (byte fallback), as in Llama 2 / Mistral tokenizers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "<0xD0>": 2, "<0x9F>": 3, "▁x": 4, "▁": 5, "x": 6, "ab": 7, "a": 8, "b": 9}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[("a", "b")], unk_token="<unk>", byte_fallback=True))
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", bos_token="<s>")
    assert [token_bytes(tokenizer, i) for i in range(10)] == [
        b"<unk>", b"<s>", b"\xd0", b"\x9f", b" x", b" ", b"x", b"ab", b"a", b"b"
    ]
    assert display_token(token_bytes(tokenizer, 2) + token_bytes(tokenizer, 3)) == "П"
