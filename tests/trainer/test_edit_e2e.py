"""Edits end to end: a real `lorascope train` process on the tiny model, edits over a real control socket,
a scripted edits file, `lorascope edit --wait`, and the edit lifecycle in the recording."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lorascope.protocol.frames import EditUpdate, RunEnd, Status
from lorascope.protocol.recording import RunReader
from lorascope.protocol.transport import ControlClient, ControlError

LORASCOPE = [sys.executable, "-m", "lorascope.protocol.cli"]


def start_trainer(model_dir: Path, out: Path, *extra: str) -> tuple[subprocess.Popen, dict]:
    """`lorascope train` on the tiny model with random ports; returns once its endpoints file exists."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    log = open(out / "train.log", "w")
    proc = subprocess.Popen(
        LORASCOPE + ["train", "--model", str(model_dir), "--pub", "tcp://127.0.0.1:0", "--control", "tcp://127.0.0.1:0",
                     "--output-dir", str(out), "--run-id", "run", "--max-steps", "3000", "--batch-size", "2",
                     "--max-length", "96", "--no-progress", "--checkpoint-every", "0", *extra],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )
    endpoints = out / "run" / "endpoints.json"
    deadline = time.monotonic() + 120
    while not endpoints.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"trainer did not start:\n{(out / 'train.log').read_text()}")
        time.sleep(0.05)
    return proc, json.loads(endpoints.read_text())


def wait_paused(client: ControlClient, recording: Path, timeout: float = 60) -> int:
    """Pause, then wait until the recording says paused; returns the step it paused at."""
    client.request("pause", timeout=timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        statuses = [f for f in RunReader(recording).frames(kinds=["status"]) if isinstance(f, Status)]
        if statuses and statuses[-1].state == "paused":
            return statuses[-1].step
        time.sleep(0.05)
    raise AssertionError("the trainer did not pause")


@pytest.fixture
def trainer(tiny_model_dir, tmp_path):
    scripted = tmp_path / "scripted.jsonl"
    # Applied by the loop itself at step 1; budget 2, so it is failed (a tiny random model cannot
    # reach q = 0.9 in two steps) by step 3 at the latest.
    scripted.write_text(json.dumps({"at_step": 1, "probe_id": "logic", "token": " yes", "q": 0.9, "budget": 2}) + "\n")
    proc, endpoints = start_trainer(tiny_model_dir, tmp_path, "--edits", str(scripted))
    try:
        yield proc, endpoints, tmp_path
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_edits_over_the_control_socket_and_from_files(trainer):
    proc, endpoints, out = trainer
    recording = Path(endpoints["recording"])
    with ControlClient(endpoints["control"]) as client:
        paused_at = wait_paused(client, recording)

        # a bad edit is refused with its fields named, and the run goes on as before
        with pytest.raises(ControlError, match=r"position: 99 is out of range .*; q: must be in \[0, 1\]"):
            client.request("edit", timeout=30, probe_id="capital-fr", position=99, token=" Paris", q=1.5)
        with pytest.raises(ControlError, match=r"token: ' Lyonnais' is 3 tokens"):
            client.request("edit", timeout=30, probe_id="capital-fr", token=" Lyonnais", q=0.5)
        with pytest.raises(ControlError, match=r"probe_id: no probe 'nope'"):
            client.request("edit", timeout=30, probe_id="nope", token=" Paris", q=0.5)

        reply = client.request("edit", timeout=30, probe_id="capital-fr", token=" Paris", q=0.5, budget=100)
        assert reply["state"] == "active" and reply["edit_id"].startswith("e")
        cancelled = client.request("cancel_edit", timeout=30, edit_id=reply["edit_id"])
        assert cancelled == {"edit_id": reply["edit_id"], "state": "cancelled"}
        with pytest.raises(ControlError, match=r"is already cancelled"):
            client.request("cancel_edit", timeout=30, edit_id=reply["edit_id"])

        # `lorascope edit` without --wait: sends each edit and prints the reply; a refused one makes it exit 2
        plain_file = out / "plain_edits.jsonl"
        plain_file.write_text(json.dumps({"probe_id": "arithmetic", "token_id": 5, "q": 0.2}) + "\n"
                              + json.dumps({"probe_id": "arithmetic", "token": " Lyonnais", "q": 0.2}) + "\n")
        plain = subprocess.run(LORASCOPE + ["edit", str(plain_file), "--endpoint", endpoints["control"]],
                               capture_output=True, text=True, timeout=120)
        assert plain.returncode == 2, plain.stdout + plain.stderr
        assert f"{plain_file}:1: arithmetic token 5 → q=0.2 → e" in plain.stdout and " active (p=" in plain.stdout
        assert f"{plain_file}:2: refused: token: ' Lyonnais' is 3 tokens" in plain.stdout
        plain_id = plain.stdout.split(" → ")[2].split()[0]
        client.request("cancel_edit", timeout=30, edit_id=plain_id)

        # `lorascope edit --wait` sends from a file and follows its edit to the end (failed: budget 2)
        cli_file = out / "cli_edits.json"
        cli_file.write_text(json.dumps([{"probe_id": "capital-fr", "token": " London", "q": 0.95, "budget": 2}]))
        cli = subprocess.Popen(
            LORASCOPE + ["edit", str(cli_file), "--endpoint", endpoints["control"], "--wait", "--timeout", "60"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        time.sleep(0.5)  # let it connect; the trainer answers while paused
        client.request("resume", timeout=30)
        try:
            cli_out, _ = cli.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            cli.kill()
            raise
        assert cli.returncode == 1, cli_out  # 1 = an edit failed
        assert f"{cli_file}:1: capital-fr ' London' → q=0.95 →" in cli_out
        assert "failed" in cli_out and "budget of 2 step(s) spent" in cli_out
        client.request("stop", timeout=60)
    assert proc.wait(timeout=60) == 0

    frames = list(RunReader(recording))
    assert isinstance(frames[-1], RunEnd) and frames[-1].reason == "stopped"
    edits = [f for f in frames if isinstance(f, EditUpdate)]
    by_id: dict[str, list[EditUpdate]] = {}
    for frame in edits:
        by_id.setdefault(frame.edit_id, []).append(frame)
    assert len(by_id) == 4
    by_token = {frames_[0].token: frames_ for frames_ in by_id.values()}
    assert [f.state for f in by_id[plain_id]] == ["requested", "active", "cancelled"]
    scripted, controlled, from_cli = by_token[" yes"], by_token[" Paris"], by_token[" London"]
    # the scripted edit: requested at step 1 by the loop, then trained on until its budget ran out
    assert scripted[0].state == "requested" and scripted[0].start_step == 1 and scripted[0].probe_id == "logic"
    assert [f.state for f in scripted] == ["requested", "active", "active", "failed"]
    assert [f.steps_used for f in scripted[2:]] == [1, 2]
    assert [f.step for f in scripted[2:]] == [2, 3]
    # the edit sent over the socket while paused, then cancelled before any step
    assert [f.state for f in controlled] == ["requested", "active", "cancelled"]
    assert all(f.step == paused_at and f.token == " Paris" and f.target_p == 0.5 for f in controlled)
    # the CLI's edit: the probability is reported each step, collateral drift covers the other probes
    assert [f.state for f in from_cli][-1] == "failed" and from_cli[-1].steps_used == 2
    assert from_cli[-1].token == " London" and 0.0 < from_cli[-1].p_token < 1.0
    probe_ids = {p.probe_id for p in frames[0].probes}
    assert set(from_cli[-1].collateral) == probe_ids - {"capital-fr"}


def test_active_edits_survive_a_resume(tiny_model_dir, tmp_path):
    """An edit still active when a run ends is in its checkpoint, and the resumed run goes on training it."""
    edits = tmp_path / "edits.jsonl"
    edits.write_text(json.dumps({"probe_id": "logic", "token": " yes", "q": 0.9, "budget": 100}) + "\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    common = ["--model", str(tiny_model_dir), "--pub", "tcp://127.0.0.1:0", "--control", "tcp://127.0.0.1:0",
              "--output-dir", str(tmp_path), "--batch-size", "2", "--max-length", "96", "--no-progress",
              "--checkpoint-every", "0", "--weight-delta-every", "0", "--volatility-every", "0"]
    first = subprocess.run(LORASCOPE + ["train", *common, "--run-id", "first", "--max-steps", "3", "--edits", str(edits)],
                           capture_output=True, text=True, env=env, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    second = subprocess.run(LORASCOPE + ["train", *common, "--run-id", "second", "--max-steps", "5",
                                         "--resume", str(tmp_path / "first")],
                            capture_output=True, text=True, env=env, timeout=300)
    assert second.returncode == 0, second.stderr[-2000:]

    before = [f for f in RunReader(tmp_path / "first" / "run.lsr") if isinstance(f, EditUpdate)]
    after = [f for f in RunReader(tmp_path / "second" / "run.lsr") if isinstance(f, EditUpdate)]
    assert [(f.state, f.steps_used) for f in before] == [("requested", 0), ("active", 0), ("active", 1),
                                                          ("active", 2), ("active", 3)]
    assert [(f.edit_id, f.state, f.step, f.steps_used) for f in after] == [("e1", "active", 4, 4), ("e1", "active", 5, 5)]
    assert after[0].start_step == 0 and after[0].p_token_start == before[0].p_token_start
    assert after[0].token == " yes" and after[0].budget == 100
