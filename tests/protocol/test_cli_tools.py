"""`lorascope inspect` on a recording made here, and `lorascope control` against a real control server."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

from protocol_samples import write_sample_run

from lorascope.protocol.cli import main as lorascope_main
from lorascope.protocol.frames import RunStart
from lorascope.protocol.recording import RunRecorder
from lorascope.protocol.stream import FrameStream
from lorascope.protocol.transport import ControlServer


def _lorascope(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lorascope.protocol.cli", *argv], capture_output=True, text=True, timeout=60)


def test_inspect_summarises_a_recording(tmp_path):
    path = write_sample_run(tmp_path / "run.lsr", steps=20)
    result = _lorascope("inspect", str(path))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "sample-run" in out and "tiny-llama" in out and "step 20" in out
    assert "2.9000 at step 1 -> 1.0000 at step 20" in out
    assert "e1" in out and "achieved" in out and "' Lyon'" in out
    assert out.index("#120") < out.index("#115")  # highest spike score first
    assert "warning" not in out


def test_inspect_json_and_torn_tail(tmp_path):
    path = write_sample_run(tmp_path / "run.lsr", steps=10)
    path.write_bytes(path.read_bytes()[:-3])  # the trainer was killed writing run_end
    result = _lorascope("inspect", str(path), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["run_id"] == "sample-run" and summary["end"] is None and summary["state"] == "running"
    assert summary["frames_by_kind"]["step"] == 10 and summary["last_loss"] == {"step": 10, "loss": 2.0}
    assert [e["state"] for e in summary["edits"]] == ["achieved"]
    assert "torn at byte" in summary["torn"]
    text = _lorascope("inspect", str(path)).stdout
    assert "warning: run.lsr: last record torn at byte" in text


def test_inspect_errors_name_the_file(tmp_path):
    (tmp_path / "x.lsr").write_text("nope")
    result = _lorascope("inspect", str(tmp_path / "x.lsr"))
    assert result.returncode == 2 and "x.lsr: not a lorascope recording" in result.stderr and "Traceback" not in result.stderr


def test_control_cli_sends_one_request(tmp_path, capsys):
    recorder = RunRecorder(tmp_path / "run.lsr")
    stream = FrameStream("cli-run", [recorder])
    stream.emit(RunStart(model="m"))
    server = ControlServer("tcp://127.0.0.1:0", recording=recorder.path, run_id="cli-run", pub_endpoint="tcp://127.0.0.1:1")
    stop = threading.Event()

    def training_loop():
        while not stop.wait(0.01):
            for req in server.poll():
                req.reply({"state": "paused", "steps": req.args.get("n")}) if req.cmd != "stop" else req.fail("already stopping")

    loop = threading.Thread(target=training_loop)
    loop.start()
    try:
        assert lorascope_main(["control", "step", "--steps", "3", "--endpoint", server.endpoint]) == 0
        out = capsys.readouterr().out
        assert out.startswith("step: ok") and '"steps": 3' in out
        assert lorascope_main(["control", "hello", "--endpoint", server.endpoint]) == 0
        assert '"run_id": "cli-run"' in capsys.readouterr().out
        assert lorascope_main(["control", "snapshot", "--endpoint", server.endpoint]) == 0
        assert '"frames": 1' in capsys.readouterr().out
        assert lorascope_main(["control", "stop", "--endpoint", server.endpoint]) == 2
        err = capsys.readouterr().err
        assert "error: stop" in err and "already stopping" in err
        assert lorascope_main(["control", "pause", "--endpoint", "tcp://127.0.0.1:1", "--timeout", "0.2"]) == 2
        assert "no reply to 'pause'" in capsys.readouterr().err
    finally:
        stop.set()
        loop.join()
        server.close()
        stream.close()


def test_inspect_ranks_by_gradient_norm_when_nothing_spiked(tmp_path):
    from lorascope.protocol.frames import F32Array, Volatility
    from lorascope.protocol.inspect import format_summary, summarize

    recorder = RunRecorder(tmp_path / "calm.lsr")
    stream = FrameStream("calm", [recorder])
    stream.emit(RunStart(model="m"))
    for step in range(1, 4):
        norms = [0.1 * step, float("nan"), 1.0 * step]
        stream.emit(Volatility(step=step, example_ids=[10 * step, 10 * step + 1, 10 * step + 2], grad_norms=F32Array.from_values(norms), losses=F32Array.from_values([1.0, 2.0, 3.0])))
    stream.close()
    summary = summarize(recorder.path, top=2)
    assert [(v["example_id"], v["step"]) for v in summary["volatile_examples"]] == [(32, 3), (22, 2)]
    assert summary["volatile_examples"][0]["loss"] == 3.0
    assert "most volatile examples (by gradient norm)" in format_summary(summary)
