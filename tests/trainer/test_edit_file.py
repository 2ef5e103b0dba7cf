"""The edits file of `lorascope edit` and `lorascope train --edits`: formats, defaults, errors with file:line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lorascope.protocol.errors import UserError
from lorascope.trainer.edits_cli import load_edit_file, load_edit_file_with_places


def test_jsonl_with_comments_and_defaults(tmp_path):
    path = tmp_path / "edits.jsonl"
    path.write_text(
        '{"probe_id": "capital-fr", "token": " Lyon", "q": 0.6}\n'
        "\n# the second one waits for step 5\n"
        '{"at_step": 5, "probe_id": "logic", "position": 3, "token_id": 42, "q": 0, "weight": 2, "tolerance": 0.05, "budget": 9}\n'
    )
    edits = load_edit_file_with_places(path)
    assert [where for where, _ in edits] == [f"{path}:1", f"{path}:4"]
    assert edits[0][1] == {"probe_id": "capital-fr", "token": " Lyon", "q": 0.6, "at_step": 0}
    assert edits[1][1]["at_step"] == 5 and edits[1][1]["token_id"] == 42


def test_json_list_keeps_line_numbers(tmp_path):
    path = tmp_path / "edits.json"
    path.write_text('[\n  {"probe_id": "a", "token": " x", "q": 0.5},\n\n  {"probe_id": "b",\n   "token": " y", "q": 0.25}\n]\n')
    assert [where for where, _ in load_edit_file_with_places(path)] == [f"{path}:2", f"{path}:4"]
    assert [e["probe_id"] for e in load_edit_file(path)] == ["a", "b"]


@pytest.mark.parametrize(
    "text,message",
    [
        ('{"probe_id": "a", "token": " x", "q": 0.5}\n{"probe_id": "a", "token": " x", "q": 1.5}\n', r":2: q: must be in \[0, 1\], got 1.5"),
        ('{"probe_id": "a", "token": " x", "q": NaN}\n', r":1: q: must be finite"),
        ('{"probe_id": "a", "token": " x", "q": 0.5, "at_step": -1}\n', r":1: at_step: must be an integer ≥ 0"),
        ('{"probe_id": "a", "q": 0.5}\n', r":1: token: missing"),
        ('{"probe_id": "a", "token": " x", "q": 0.5, "budget": 0, "lr": 1}\n', r":1: budget: must be an integer ≥ 1 .*; lr: unknown field"),
        ('{"probe_id": "a", "token": " x", "q": 0.5\n', r":1: not JSON"),
        ('[\n{"probe_id": "a", "token": " x", "q": 0.5}\n{"probe_id": "b"}\n]', r":3: expected ',' or ']'"),
        ('[{"probe_id": "a", "token": " x", "q": 0.5}]\n[]', r":2: text after the closing"),
        ("[3]", r":1: edit request must be a map"),
        ("\n# nothing\n", r"no edits in the file"),
    ],
)
def test_bad_files_name_file_line_and_field(tmp_path, text, message):
    path = tmp_path / "edits.jsonl"
    path.write_text(text)
    with pytest.raises(UserError, match=message):
        load_edit_file(path)


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="edits file not found"):
        load_edit_file(tmp_path / "nope.jsonl")


def test_the_command_refuses_a_bad_file_without_torch(tmp_path):
    path = tmp_path / "edits.jsonl"
    path.write_text('{"probe_id": "a", "token": " x", "q": 2}\n')
    code = (
        "import sys; from lorascope.protocol.cli import main; rc = main(['edit', sys.argv[1]]);"
        "print('torch' in sys.modules); sys.exit(rc)"
    )
    result = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert f"lorascope edit: error: {path}:1: q: must be in [0, 1], got 2" in result.stderr
    assert result.stdout.strip() == "False"  # a control client: runs on a laptop without torch
