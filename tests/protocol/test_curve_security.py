"""Only loopback binds are open; anything else needs CurveZMQ keys or a loudly warned --insecure."""

from __future__ import annotations

import pytest
from protocol_samples import poll_until

from lorascope.protocol.cli import main as lorascope_main
from lorascope.protocol.endpoints import control_endpoint_for, is_loopback
from lorascope.protocol.errors import UserError
from lorascope.protocol.frames import RunStart, StepMetrics
from lorascope.protocol.recording import RunRecorder
from lorascope.protocol.security import generate_keys
from lorascope.protocol.stream import FrameStream
from lorascope.protocol.transport import ControlClient, ControlError, ControlServer, LiveFeed, Publisher


def test_loopback_rules():
    assert is_loopback("tcp://127.0.0.1:5555") and is_loopback("tcp://127.0.0.2:1") and is_loopback("tcp://localhost:1")
    assert is_loopback("tcp://[::1]:5555") and is_loopback("ipc:///tmp/x")
    assert not is_loopback("tcp://0.0.0.0:5555") and not is_loopback("tcp://*:5555") and not is_loopback("tcp://eth0:1")
    assert control_endpoint_for("tcp://127.0.0.1:5555") == "tcp://127.0.0.1:5556"
    assert control_endpoint_for("tcp://gpu-box:7000") == "tcp://gpu-box:7001"
    with pytest.raises(UserError, match="tcp://HOST:PORT"):
        control_endpoint_for("127.0.0.1:5555")


def test_non_loopback_bind_without_keys_is_refused():
    with pytest.raises(UserError, match=r"refusing to bind tcp://0\.0\.0\.0:0 without CurveZMQ keys"):
        Publisher("tcp://0.0.0.0:0")
    with pytest.raises(UserError, match=r"refusing to bind tcp://\*:0"):
        ControlServer("tcp://*:0", recording=None, run_id="r", pub_endpoint="")


def test_insecure_opt_out_warns_loudly(capsys):
    pub = Publisher("tcp://0.0.0.0:0", insecure=True)
    pub.close()
    err = capsys.readouterr().err
    assert "WARNING" in err and "tcp://0.0.0.0:0 WITHOUT encryption" in err


def test_curve_keys_admit_key_holders_only(tmp_path):
    keys = generate_keys(tmp_path / "keys")
    recorder = RunRecorder(tmp_path / "run.lsr")
    pub = Publisher("tcp://0.0.0.0:0", curve_dir=keys)
    port = pub.endpoint.rsplit(":", 1)[1]
    ctl = ControlServer("tcp://0.0.0.0:0", recording=recorder.path, run_id="secret-run", pub_endpoint=pub.endpoint, curve_dir=keys)
    ctl_port = ctl.endpoint.rsplit(":", 1)[1]
    stream = FrameStream("secret-run", [recorder, pub])
    try:
        stream.emit(RunStart(model="m"))
        stream.emit(StepMetrics(step=1))
        with ControlClient(f"tcp://127.0.0.1:{ctl_port}", curve_dir=keys) as client:
            assert client.request("hello")["run_id"] == "secret-run"
        feed = LiveFeed(f"tcp://127.0.0.1:{port}", f"tcp://127.0.0.1:{ctl_port}", curve_dir=keys)
        try:
            got = poll_until(feed, lambda g: len(g) >= 2)
            assert [f.seq for f in got] == [0, 1]
        finally:
            feed.close()
        with ControlClient(f"tcp://127.0.0.1:{ctl_port}") as stranger:  # no keys: the handshake never completes
            with pytest.raises(ControlError, match="no reply"):
                stranger.request("pause", timeout=0.5)
        assert ctl.poll() == []
    finally:
        ctl.close()
        stream.close()


def test_keys_subcommand_writes_keypairs_and_refuses_to_overwrite(tmp_path, capsys):
    assert lorascope_main(["keys", str(tmp_path / "k")]) == 0
    names = sorted(p.name for p in (tmp_path / "k").iterdir())
    assert names == ["authorized", "client.key", "client.key_secret", "server.key", "server.key_secret"]
    assert "--curve-dir" in capsys.readouterr().out
    assert lorascope_main(["keys", str(tmp_path / "k")]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
