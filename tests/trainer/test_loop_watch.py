"""`lorascope train --watch` in a real pseudo-terminal: the UI draws, `q` quits it, the trainer saves and ends."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time

from lorascope.protocol.recording import RunReader


def test_watch_runs_the_ui_in_this_terminal_and_stops_the_trainer_when_it_exits(tiny_model_dir, tmp_path):
    master, slave = pty.openpty()
    os.set_blocking(master, False)
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", TERM="xterm-256color", COLUMNS="100", LINES="30")
    command = [sys.executable, "-m", "lorascope.protocol.cli", "train", "--watch", "--model", str(tiny_model_dir),
               "--pub", "tcp://127.0.0.1:0", "--control", "tcp://127.0.0.1:0", "--output-dir", str(tmp_path),
               "--run-id", "w", "--max-length", "64", "--batch-size", "2", "--max-steps", "1000"]
    proc = subprocess.Popen(command, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
    os.close(slave)
    screen = b""
    try:
        recording = tmp_path / "w" / "run.lsr"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if select.select([master], [], [], 0.2)[0]:
                try:
                    screen += os.read(master, 65536)
                except OSError:
                    break
            if recording.is_file() and b"\x1b[" in screen and _steps(recording) >= 2:
                break
        assert proc.poll() is None, screen[-2000:].decode(errors="replace")
        assert _steps(recording) >= 2
        time.sleep(1.0)  # let the UI settle before it gets its key
        os.write(master, b"q")
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            if select.select([master], [], [], 0.2)[0]:
                try:
                    screen += os.read(master, 65536)
                except OSError:
                    pass
        assert proc.poll() is not None, "the UI did not exit on q"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    with RunReader(tmp_path / "w" / "run.lsr") as reader:
        frames = list(reader)
    assert frames[-1].kind == "run_end" and frames[-1].reason == "interrupted"  # SIGINT from --watch: saved, ended
    assert (tmp_path / "w" / "adapter" / "adapter_model.safetensors").is_file()
    assert (tmp_path / "w" / "train.log").is_file()


def _steps(recording) -> int:
    with RunReader(recording) as reader:
        return sum(1 for f in reader if f.kind == "step")
