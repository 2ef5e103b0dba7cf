"""Pieces of the loop on their own: a failing observer is switched off, the progress line, the state machine."""

from __future__ import annotations

import io

from lorascope.protocol.frames import Resources
from lorascope.protocol.recording import RunReader, RunRecorder
from lorascope.protocol.stream import FrameStream
from lorascope.trainer.progress import ProgressLine
from lorascope.trainer.resources import ResourceObserver
from lorascope.trainer.run_control import RunControl
from lorascope.trainer.train import _observe


class BrokenObserver:
    """An observer that fails the way a real one might (a shape it did not expect)."""

    closed = False

    def observe(self, step, force=False):
        raise RuntimeError("shape mismatch in probe 3")

    def close(self):
        self.closed = True


def test_a_failing_observer_is_switched_off_with_a_status_and_the_others_go_on(tmp_path):
    recorder = RunRecorder(tmp_path / "run.lsr")
    stream = FrameStream("r", sinks=[recorder])
    control = RunControl(None, stream, save=lambda step, reason: "")
    control.set_state("running", 0)
    broken = BrokenObserver()
    observers = {"broken": broken, "resources": ResourceObserver("cpu", every=1)}
    for step in (1, 2):
        for name in list(observers):
            _observe(observers, name, step, stream, control)
    stream.close()
    assert list(observers) == ["resources"] and broken.closed
    frames = list(RunReader(tmp_path / "run.lsr"))
    statuses = [f for f in frames if f.kind == "status"]
    assert statuses[-1].state == "running"
    assert statuses[-1].message == "broken observer switched off: RuntimeError: shape mismatch in probe 3"
    assert sum(isinstance(f, Resources) for f in frames) == 2  # step 1 and step 2


def test_step_n_pauses_after_n_steps(tmp_path):
    recorder = RunRecorder(tmp_path / "run.lsr")
    stream = FrameStream("r", sinks=[recorder])
    control = RunControl(None, stream, save=lambda step, reason: "")
    control.set_state("paused", 3)
    assert control._handle("step", {"n": 2}, 3)["steps"] == 2
    assert control.state == "running"
    control.step_done(4)
    assert control.state == "running"
    control.step_done(5)
    assert control.state == "paused" and control.steps_left is None
    stream.close()
    assert [f.state for f in RunReader(tmp_path / "run.lsr") if f.kind == "status"] == ["paused", "running", "paused"]


def test_progress_line_into_a_file_writes_plain_lines_every_n_steps():
    out = io.StringIO()
    line = ProgressLine(20, stream=out, log_every=10)
    for step in range(1, 21):
        line.update(step, loss=2.5, tokens_per_s=1234.0)
    line.message("[paused]")
    line.close()
    lines = out.getvalue().splitlines()
    assert [l.split()[1] for l in lines[:2]] == ["10/20", "20/20"]
    assert "loss 2.5000" in lines[0] and "1,234 tok/s" in lines[0] and "\r" not in out.getvalue()
    assert lines[-1] == "[paused]"
    silent = io.StringIO()
    ProgressLine(5, stream=silent, enabled=False).update(5, loss=1.0, tokens_per_s=1.0)
    assert silent.getvalue() == ""


def test_busy_port_is_a_user_error_and_leaves_no_run_folder(tiny_model_dir, tmp_path):
    import pytest
    import zmq

    from lorascope.protocol.errors import UserError
    from lorascope.trainer.config import TrainConfig
    from lorascope.trainer.train import train

    sock = zmq.Context.instance().socket(zmq.PUB)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    try:
        cfg = TrainConfig(model=str(tiny_model_dir), max_steps=1, max_length=64, pub=f"tcp://127.0.0.1:{port}",
                          control="tcp://127.0.0.1:0", output_dir=str(tmp_path), run_id="busy", progress=False)
        with pytest.raises(UserError, match="address already in use"):
            train(cfg)
    finally:
        sock.close(linger=0)
    assert not (tmp_path / "busy").exists()
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "run.lsr").write_bytes(b"")
    with pytest.raises(UserError, match="already holds a recording"):
        train(TrainConfig(model=str(tiny_model_dir), output_dir=str(tmp_path), run_id="taken", progress=False))
