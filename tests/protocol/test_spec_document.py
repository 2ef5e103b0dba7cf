"""SPEC.md stays true: its frame tables match frames.py, and its example client really works."""

from __future__ import annotations

import queue
import re
import subprocess
import sys
import threading

from lorascope.protocol.control import LOOP_COMMANDS, SERVER_COMMANDS
from lorascope.protocol.frames import FRAME_TYPES, RunEnd, RunStart, StepMetrics
from lorascope.protocol.recording import RunRecorder
from lorascope.protocol.spec_tables import BEGIN, END, SPEC_PATH, render_tables
from lorascope.protocol.stream import FrameStream
from lorascope.protocol.transport import ControlServer, Publisher

SPEC = SPEC_PATH.read_text(encoding="utf-8")


def test_frame_tables_match_frames_py():
    tables = SPEC[SPEC.index(BEGIN) : SPEC.index(END) + len(END)]
    assert tables == render_tables(), "SPEC.md is out of date: run `python -m lorascope.protocol.spec_tables --write`"
    for kind in FRAME_TYPES:
        assert f"#### `{kind}`" in tables


def test_every_command_is_documented():
    for cmd in SERVER_COMMANDS + LOOP_COMMANDS:
        assert f"| `{cmd}` |" in SPEC, cmd


def _example_client() -> str:
    marker = SPEC.index("<!-- example client")
    match = re.compile(r"```python\n(.*?)```", re.S).search(SPEC, marker)
    assert match, "no python block after the example-client marker"
    return match.group(1)


def test_example_client_runs_against_a_real_trainer_side(tmp_path):
    script = tmp_path / "client.py"
    script.write_text(_example_client())
    recorder = RunRecorder(tmp_path / "run.lsr")
    pub = Publisher("tcp://127.0.0.1:0")
    server = ControlServer("tcp://127.0.0.1:0", recording=recorder.path, run_id="spec", pub_endpoint=pub.endpoint)
    stream = FrameStream("spec", [recorder, pub])
    stream.emit(RunStart(model="m"))
    for step in range(1, 4):
        stream.emit(StepMetrics(step=step, loss=1.0 / step))
    client = subprocess.Popen([sys.executable, str(script), pub.endpoint, server.endpoint], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line.strip()) for line in client.stdout], daemon=True).start()
    try:
        history = [lines.get(timeout=20) for _ in range(3)]
        assert history == ["step 1: loss 1.0000", "step 2: loss 0.5000", "step 3: loss 0.3333"]
        # Live frames, one at a time until the client shows one (its subscription is then in place), then the end.
        step = 3
        while True:
            step += 1
            stream.emit(StepMetrics(step=step, loss=0.25))
            try:
                assert re.fullmatch(r"step \d+: loss 0\.2500", lines.get(timeout=0.5))
                break
            except queue.Empty:
                assert step < 60, "the example client never showed a live frame"
        stream.emit(RunEnd(step=step))
        assert client.wait(timeout=20) == 0, client.stderr.read()
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
        server.close()
        stream.close()
