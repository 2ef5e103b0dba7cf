"""Real sockets on tcp loopback: PUB/SUB, ROUTER/DEALER, late joiners, gap filling, restarts."""

from __future__ import annotations

import threading
import time

import msgpack
import pytest
import zmq
from protocol_samples import poll_until

import lorascope.protocol.live_feed as live_feed
import lorascope.protocol.publisher as publisher
from lorascope.protocol.codec import from_multipart
from lorascope.protocol.frames import Frame, RunEnd, RunStart, Status, StepMetrics
from lorascope.protocol.recording import RunRecorder
from lorascope.protocol.stream import FrameStream
from lorascope.protocol.transport import ControlClient, ControlError, ControlReply, ControlServer, LiveFeed, Publisher

LOOPBACK = "tcp://127.0.0.1:0"


class Trainer:
    """The trainer's half, as lorascope.trainer wires it: recorder first, then publisher, plus control."""

    def __init__(self, tmp_path, run_id="run-a", pub=LOOPBACK, control=LOOPBACK, drop=lambda seq: False):
        self.publisher = Publisher(pub)
        try:
            self.control = ControlServer(control, recording=tmp_path / f"{run_id}.lsr", run_id=run_id, pub_endpoint=self.publisher.endpoint)
        except BaseException:
            self.publisher.close()
            raise
        self.recorder = RunRecorder(tmp_path / f"{run_id}.lsr")  # the control server may start before the file exists
        _lose_on_the_wire(self.publisher, drop)
        self.stream = FrameStream(run_id, [self.recorder, self.publisher])
        self.stream.emit(RunStart(model="tiny", total_steps=10_000))

    def steps(self, n: int) -> None:
        first = self.stream.last_seq
        for i in range(n):
            self.stream.emit(StepMetrics(step=first + i, loss=1.0))

    def answer(self) -> None:
        for req in self.control.poll():
            if req.cmd == "step" and not isinstance(req.args.get("n"), int):
                req.fail(f"step: n must be an integer, got {req.args.get('n')!r}")
            else:
                req.reply({"done": req.cmd, "args": req.args})

    def close(self) -> None:
        self.control.close()
        self.stream.close()


def _lose_on_the_wire(pub: Publisher, drop) -> None:
    """Make the socket lose the frames `drop(seq)` picks: what a PUB high-water mark does, made repeatable."""
    send = pub._send

    def lossy_send(frame, payload):
        if frame.kind == "heartbeat" or not drop(frame.seq):
            send(frame, payload)

    pub._send = lossy_send


@pytest.fixture
def trainer(tmp_path):
    t = Trainer(tmp_path)
    yield t
    t.close()


def _frames(items) -> list[Frame]:
    return [x for x in items if not isinstance(x, ControlReply)]


def test_pub_sub_multipart_with_kind_filter(trainer):
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"step")
    sub.setsockopt(zmq.SUBSCRIBE, b"status")
    sub.connect(trainer.publisher.endpoint)
    try:
        while not sub.poll(50):  # PUB/SUB joins slowly: announce until the subscription is in place
            trainer.stream.emit(Status(state="running"))
        while sub.poll(50):
            sub.recv_multipart()
        trainer.steps(3)
        trainer.stream.emit(RunEnd())
        got = []
        while sub.poll(1000):
            parts = sub.recv_multipart()
            got.append((parts[0], from_multipart(parts)))
            if len(got) == 3:
                break
        assert [topic for topic, _ in got] == [b"step"] * 3
        assert [f.seq for _, f in got] == [trainer.stream.last_seq - 3 + i for i in range(3)]
        assert not sub.poll(200)  # run_end was filtered out by the subscriber
    finally:
        sub.close()


def test_control_requests_get_replies(trainer):
    stop = threading.Event()
    loop = threading.Thread(target=lambda: [trainer.answer() or time.sleep(0.01) for _ in iter(stop.is_set, True)])
    loop.start()
    try:
        with ControlClient(trainer.control.endpoint) as client:
            hello = client.request("hello")
            assert hello["run_id"] == "run-a" and hello["pub_endpoint"] == trainer.publisher.endpoint and hello["last_seq"] == 0
            assert client.request("ping")["pong"] is True
            assert client.request("pause") == {"done": "pause", "args": {}}
            assert client.request("step", n=3)["args"] == {"n": 3}
            with pytest.raises(ControlError, match="n must be an integer"):
                client.request("step", n="three")
            with pytest.raises(ControlError, match="unknown command 'fly'"):
                client.request("fly")
            with pytest.raises(ControlError, match="from_seq must be an integer"):
                client.request("snapshot", from_seq=-4)
    finally:
        stop.set()
        loop.join()


@pytest.mark.parametrize(
    "payload, error",
    [
        (b"\xc1 not msgpack", "request is not msgpack"),
        (msgpack.packb([1, "pause"]), "must be a map"),
        (msgpack.packb({"cmd": "pause"}), "request has no 'id'"),
        (msgpack.packb({"id": 1}), "no 'cmd'"),
        (msgpack.packb({"id": 1, "cmd": "pause", "args": [1]}), "'args' must be a map"),
    ],
)
def test_malformed_requests_get_error_replies(trainer, payload, error):
    dealer = zmq.Context.instance().socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(trainer.control.endpoint)
    try:
        dealer.send(payload)
        assert dealer.poll(5000)
        reply = msgpack.unpackb(dealer.recv(), raw=False)
        assert reply["ok"] is False and error in reply["error"]
        assert trainer.control.poll() == []  # nothing bad reaches the training loop
        with ControlClient(trainer.control.endpoint) as client:
            assert client.request("ping")["pong"]  # and the server is still up
    finally:
        dealer.close()


def test_unserialisable_loop_reply_becomes_an_error(trainer):
    with ControlClient(trainer.control.endpoint) as client:
        result = {}
        t = threading.Thread(target=lambda: result.update(err=_expect_error(client, "save")))
        t.start()
        while t.is_alive():
            for req in trainer.control.poll():
                req.reply({"when": object()})
                req.reply({"twice": True})  # ignored: exactly one reply per request
            time.sleep(0.01)
        assert "not serialisable" in result["err"]


def _expect_error(client, cmd, timeout=5.0):
    try:
        client.request(cmd, timeout=timeout)
    except ControlError as exc:
        return str(exc)
    return "no error"


def test_late_joiner_gets_everything_in_order_once(trainer):
    trainer.steps(1000)
    feed = LiveFeed(trainer.publisher.endpoint, trainer.control.endpoint)
    try:
        got = _frames(poll_until(feed, lambda g: len(g) >= 1001))
        trainer.steps(200)  # and the live stream continues after the history
        got += _frames(poll_until(feed, lambda g: len(g) >= 200))
        assert [f.seq for f in got] == list(range(1201))
        assert got[0].kind == "run_start" and feed.state == "live" and feed.frames_received == 1201
    finally:
        feed.close()


def test_joiner_during_a_burst_merges_snapshot_and_stream(trainer):
    feed = LiveFeed(trainer.publisher.endpoint, trainer.control.endpoint)
    burst = threading.Thread(target=trainer.steps, args=(3000,))
    try:
        burst.start()
        got = _frames(poll_until(feed, lambda g: len(g) >= 3001, timeout=30))
        burst.join()
        assert [f.seq for f in got] == list(range(3001))
    finally:
        burst.join()
        feed.close()


def test_dropped_frames_are_filled_from_the_recording(tmp_path, monkeypatch):
    monkeypatch.setattr(publisher, "HEARTBEAT_INTERVAL", 0.1)
    # Lose every 7th frame and the very last one: only a heartbeat can reveal the last.
    t = Trainer(tmp_path, drop=lambda seq: seq % 7 == 3 or seq == 300)
    feed = LiveFeed(t.publisher.endpoint, t.control.endpoint)
    try:
        got = _frames(poll_until(feed, lambda g: feed.state == "live"))
        t.steps(300)
        got += _frames(poll_until(feed, lambda g: feed.last_seq >= 300))
        assert [f.seq for f in got] == list(range(301))
        assert feed.gaps_filled > 0 and feed.gaps_skipped == 0
    finally:
        feed.close()
        t.close()


def test_trainer_restart_with_a_new_run_starts_over(tmp_path):
    first = Trainer(tmp_path, run_id="run-1")
    pub, ctl = first.publisher.endpoint, first.control.endpoint
    feed = LiveFeed(pub, ctl)
    try:
        first.steps(5)
        got = _frames(poll_until(feed, lambda g: len(g) >= 6))
        assert [f.run_id for f in got] == ["run-1"] * 6
        first.close()
        second = _retry_bind(lambda: Trainer(tmp_path, run_id="run-2", pub=pub, control=ctl))
        try:
            second.steps(3)
            got = _frames(poll_until(feed, lambda g: len(g) >= 4 and feed.run_id == "run-2"))
            got = [f for f in got if f.run_id == "run-2"]
            assert [f.seq for f in got] == [0, 1, 2, 3] and got[0].kind == "run_start"
        finally:
            second.close()
    finally:
        feed.close()


def _retry_bind(make, attempts: int = 50):
    """A closed socket frees its port on ZeroMQ's I/O thread, a moment later; a restarting trainer waits too."""
    from lorascope.protocol.errors import UserError

    for _ in range(attempts - 1):
        try:
            return make()
        except UserError as exc:
            if "already in use" not in str(exc):
                raise
            time.sleep(0.05)
    return make()


def test_silence_makes_the_feed_stale(tmp_path, monkeypatch):
    monkeypatch.setattr(live_feed, "STALE_AFTER", 0.3)
    t = Trainer(tmp_path)
    feed = LiveFeed(t.publisher.endpoint, t.control.endpoint)
    try:
        poll_until(feed, lambda g: feed.state == "live")
        t.close()
        poll_until(feed, lambda g: feed.state == "stale", timeout=5)
        assert feed.state == "stale" and feed.reconnects >= 1
    finally:
        feed.close()
    assert feed.state == "disconnected"


def test_heartbeats_flow_while_idle_and_carry_the_state(tmp_path, monkeypatch):
    monkeypatch.setattr(publisher, "HEARTBEAT_INTERVAL", 0.05)
    t = Trainer(tmp_path)
    feed = LiveFeed(t.publisher.endpoint, t.control.endpoint, heartbeats=True)
    try:
        t.stream.emit(Status(state="paused"))
        got = poll_until(feed, lambda g: any(f.kind == "heartbeat" and f.state == "paused" for f in g))
        beat = next(f for f in got if f.kind == "heartbeat" and f.state == "paused")
        assert beat.last_seq == 1 and beat.seq == 1 and beat.run_id == "run-a"
        assert [f.seq for f in got if f.kind != "heartbeat"] == [0, 1]  # beats take no seq of their own
    finally:
        feed.close()
        t.close()


def test_ui_requests_go_through_the_feed(trainer):
    feed = LiveFeed(trainer.publisher.endpoint, trainer.control.endpoint)
    try:
        ids = [feed.send("pause"), feed.send("step", n="x")]
        got = poll_until(feed, lambda g: len([x for x in g if isinstance(x, ControlReply)]) == 2, on_idle=trainer.answer)
        replies = {r.id: r for r in got if isinstance(r, ControlReply)}
        assert replies[ids[0]].ok and replies[ids[0]].cmd == "pause"
        assert not replies[ids[1]].ok and "n must be an integer" in replies[ids[1]].error
    finally:
        feed.close()


def test_publisher_never_blocks_and_counts_what_it_drops(tmp_path):
    pub = Publisher(LOOPBACK)
    frame = StepMetrics(run_id="r", seq=0)
    payload = b"x" * 100
    total = publisher.QUEUE_SIZE * 3
    for _ in range(total):
        pub.write_frame(frame, payload)  # no subscriber, tiny queue: returns at once, every time
    pub.close()
    assert pub.published + pub.dropped == total


def test_busy_port_is_a_user_error(trainer):
    from lorascope.protocol.errors import UserError

    with pytest.raises(UserError, match="cannot bind .*address already in use"):
        Publisher(trainer.publisher.endpoint)


def test_long_history_is_paced_and_complete(trainer):
    trainer.steps(20_000)
    feed = LiveFeed(trainer.publisher.endpoint, trainer.control.endpoint)
    try:
        got = _frames(poll_until(feed, lambda g: len(g) >= 20_001, timeout=60))
        assert len(got) == 20_001 and all(f.seq == i for i, f in enumerate(got))
    finally:
        feed.close()


def test_kind_filter_gets_only_those_kinds_in_order(trainer):
    trainer.stream.emit(Status(state="running"))
    trainer.steps(50)
    feed = LiveFeed(trainer.publisher.endpoint, trainer.control.endpoint, kinds=["status", "run_start"])
    try:
        got = _frames(poll_until(feed, lambda g: len(g) >= 2))
        trainer.steps(20)
        trainer.stream.emit(Status(state="paused"))
        got += _frames(poll_until(feed, lambda g: len(g) >= 1))
        assert [(f.kind, getattr(f, "state", "")) for f in got] == [("run_start", ""), ("status", "running"), ("status", "paused")]
        assert feed.gaps_skipped == 0
    finally:
        feed.close()


def test_trainer_without_recording_still_streams(tmp_path):
    pub = Publisher(LOOPBACK)
    ctl = ControlServer(LOOPBACK, recording=None, run_id="norec", pub_endpoint=pub.endpoint)
    stream = FrameStream("norec", [pub])
    feed = LiveFeed(pub.endpoint, ctl.endpoint)
    try:
        poll_until(feed, lambda g: feed.state == "live")
        assert "no recording" in feed.error
        got = []
        for step in range(100):  # the first frames may go before the subscription is in place
            stream.emit(StepMetrics(step=step))
            got += _frames(feed.poll(20))
            if len(got) >= 3:
                break
        seqs = [f.seq for f in got]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    finally:
        feed.close()
        ctl.close()
        stream.close()


def test_a_newer_trainer_is_refused_with_both_versions():
    ctx = zmq.Context.instance()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub_port = pub.bind_to_random_port("tcp://127.0.0.1")
    feed = LiveFeed(f"tcp://127.0.0.1:{pub_port}", f"tcp://127.0.0.1:{port}")
    try:
        assert router.poll(5000)
        ident, request = router.recv_multipart()
        req = msgpack.unpackb(request, raw=False)
        assert req["cmd"] == "hello"
        reply = {"id": req["id"], "ok": True, "cmd": "hello", "data": {"run_id": "r", "protocol": [2, 0]}, "error": ""}
        router.send_multipart([ident, msgpack.packb(reply)])
        poll_until(feed, lambda g: feed.state == "disconnected", timeout=5)
        assert feed.state == "disconnected" and "protocol 2.0" in feed.error and "1.x" in feed.error
        assert feed.poll(10) == []
    finally:
        feed.close()
        router.close()
        pub.close()


def test_a_plain_req_socket_can_say_hello(trainer):
    req = zmq.Context.instance().socket(zmq.REQ)
    req.setsockopt(zmq.LINGER, 0)
    req.connect(trainer.control.endpoint)
    try:
        req.send(msgpack.packb({"id": "r1", "cmd": "hello"}))  # no args: they default to {}
        assert req.poll(5000)
        reply = msgpack.unpackb(req.recv(), raw=False)
        assert reply["ok"] and reply["id"] == "r1" and reply["data"]["run_id"] == "run-a"
    finally:
        req.close()


def test_a_reply_after_close_writes_to_no_reused_descriptor(tmp_path):
    import os

    t = Trainer(tmp_path)
    with ControlClient(t.control.endpoint) as client:
        waiter = threading.Thread(target=lambda: _expect_error(client, "save", 0.5))
        waiter.start()
        requests = []
        while not requests:
            requests = t.control.poll()
            time.sleep(0.01)
        wake_fd = t.control._wake_w
        t.close()
        # Its wake pipe's fd numbers are free now: open files until one of them takes that number.
        fds = []
        while not fds or (fds[-1] != wake_fd and len(fds) < 200):
            fds.append(os.open(tmp_path / f"other{len(fds)}", os.O_WRONLY | os.O_CREAT))
        try:
            assert wake_fd in fds
            requests[0].reply({"late": True})  # the trainer answered while shutting down: harmless
        finally:
            for fd in fds:
                os.close(fd)
        waiter.join()
    assert all((tmp_path / f"other{i}").stat().st_size == 0 for i in range(len(fds)))


def test_no_trainer_yet_says_so_and_keeps_trying(tmp_path, monkeypatch):
    from protocol_samples import free_tcp_port

    monkeypatch.setattr(live_feed, "STALE_AFTER", 0.2)
    pub_port = free_tcp_port()
    feed = LiveFeed(f"tcp://127.0.0.1:{pub_port}")  # control port by convention: pub port + 1
    try:
        poll_until(feed, lambda g: feed.error, timeout=5)
        assert feed.state == "connecting" and f"no answer from tcp://127.0.0.1:{pub_port + 1}" in feed.error
        # The trainer comes up late, on those ports: the feed finds it by itself.
        t = _retry_bind(lambda: Trainer(tmp_path, pub=f"tcp://127.0.0.1:{pub_port}", control=f"tcp://127.0.0.1:{pub_port + 1}"))
        try:
            got = _frames(poll_until(feed, lambda g: g and feed.state == "live"))
            assert [f.kind for f in got] == ["run_start"] and feed.error == ""
        finally:
            t.close()
    finally:
        feed.close()
