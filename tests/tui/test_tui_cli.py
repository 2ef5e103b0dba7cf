"""`lorascope watch/replay/compare` refuse bad input with one line naming what and where."""

from __future__ import annotations

import json

import pytest

from lorascope.protocol.cli import main
from lorascope.tui.cli import resolve_recording, resolve_watch


@pytest.mark.parametrize("argv, message", [
    (["replay", "nowhere.lsr"], "nowhere.lsr: no such recording"),
    (["compare", "a.lsr", "b.lsr"], "a.lsr: no such recording"),
    (["watch", "localhost:5555"], "is not an endpoint like tcp://127.0.0.1:5555"),
])
def test_bad_arguments_are_one_line_errors(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_not_a_recording(tmp_path, capsys):
    bogus = tmp_path / "notes.lsr"
    bogus.write_text("hello")
    assert main(["replay", str(bogus)]) == 2
    assert "not a lorascope recording" in capsys.readouterr().err


def test_run_directory_resolves_to_its_recording_and_endpoints(tmp_path, synthetic_run):
    run_dir = tmp_path / "run1"
    run_dir.mkdir()
    (run_dir / "run.lsr").write_bytes(synthetic_run.read_bytes())
    assert resolve_recording(str(run_dir)) == run_dir / "run.lsr"
    (run_dir / "endpoints.json").write_text(json.dumps({"pub": "tcp://127.0.0.1:6001", "control": "tcp://127.0.0.1:6002"}))
    assert resolve_watch(str(run_dir), None) == ("tcp://127.0.0.1:6001", "tcp://127.0.0.1:6002")
    assert resolve_watch("tcp://127.0.0.1:7000", None) == ("tcp://127.0.0.1:7000", None)


def test_the_ui_never_imports_torch():
    import subprocess
    import sys

    code = ("import sys, lorascope.tui.app, lorascope.tui.cli, lorascope.tui.replay_model, "
            "lorascope.tui.screens.replay, lorascope.tui.screens.compare; "
            "assert 'torch' not in sys.modules and 'numpy' not in sys.modules, sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'numpy'))")
    subprocess.run([sys.executable, "-c", code], check=True)
