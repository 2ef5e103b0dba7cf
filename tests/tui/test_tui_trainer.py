"""The UI against a real trainer process on the tiny model: join mid-run, resume it by key, end with everything."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from test_tui_live import wait_until

from lorascope.protocol.recording import RunReader
from lorascope.protocol.transport import ControlClient
from lorascope.tui.app import LorascopeApp


def start_trainer(tiny_model_dir, out_dir, steps: int) -> subprocess.Popen:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    command = [sys.executable, "-m", "lorascope.protocol.cli", "train", "--model", str(tiny_model_dir),
               "--pub", "tcp://127.0.0.1:0", "--control", "tcp://127.0.0.1:0", "--output-dir", str(out_dir),
               "--run-id", "ui-live", "--max-steps", str(steps), "--batch-size", "2", "--max-length", "48",
               "--weight-delta-every", "2", "--logit-shift-every", "2", "--checkpoint-every", "0"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=open(out_dir / "trainer.err", "wb"), env=env)


def wait_for(condition, timeout: float, what: str, child: subprocess.Popen, out_dir):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if child.poll() is not None:
            raise AssertionError(f"trainer exited ({child.returncode}) before {what}: "
                                 + (out_dir / "trainer.err").read_text()[-2000:])
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def test_watch_real_trainer(tiny_model_dir, tmp_path):
    child = start_trainer(tiny_model_dir, tmp_path, steps=40)
    run_dir = tmp_path / "ui-live"
    try:
        endpoints = wait_for(lambda: (run_dir / "endpoints.json").is_file()
                             and json.loads((run_dir / "endpoints.json").read_text()), 180, "endpoints.json",
                             child, tmp_path)
        client = ControlClient(endpoints["control"])
        try:
            # Pause it after a few steps, so the UI surely joins mid-run with history to catch up on.
            def steps_recorded():
                reader = RunReader(run_dir / "run.lsr")
                try:
                    return reader.index().counts().get("step", 0) >= 3
                finally:
                    reader.close()

            wait_for(steps_recorded, 180, "three steps", child, tmp_path)
            client.request("pause", timeout=30)
        finally:
            client.close()
        app = LorascopeApp.live(endpoints["pub"], endpoints["control"])
        async with app.run_test(size=(100, 30)) as pilot:
            assert await wait_until(pilot, lambda: app.state.state == "paused" and app.state.run_start is not None, 180)
            joined_at = app.state.step
            assert 3 <= joined_at < 40
            await pilot.press("n")  # one step, then paused again
            assert await wait_until(pilot, lambda: app.state.step == joined_at + 1 and app.state.state == "paused", 180)
            await pilot.press("r")
            assert await wait_until(pilot, lambda: app.state.run_end is not None, 300)
            assert await wait_until(pilot, lambda: app.state.last_seq >= app.state.run_end.seq, 60)
            cmds = [(r.cmd, r.ok) for r in app.replies]
            assert ("step", True) in cmds and ("resume", True) in cmds
            state = app.state
        assert child.wait(timeout=120) == 0
        reader = RunReader(run_dir / "run.lsr")
        recorded = list(reader)
        reader.close()
        # Everything the trainer recorded reached the UI once, in order (heartbeats are not recorded).
        assert app.frames_applied == len(recorded)
        assert state.last_seq == recorded[-1].seq
        assert state.step == 40 and state.state == "finished"
        assert state.history.points("loss")[0] == [float(f.step) for f in recorded if f.kind == "step"]
        assert state.deltas is not None and state.shifts is not None and state.volatility is not None
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
