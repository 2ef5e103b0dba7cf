"""The UI's side of a live run: SUB for frames, DEALER for control (the ZeroMQ guide's Clone pattern).

Subscribe first, then ask for the history (hello, then a snapshot from the
recording), drop live frames the snapshot already covered, and from then on
deliver frames strictly in seq order: a jump in seq (a frame the PUB socket
dropped at its high-water mark) is filled by asking for the missing range. A
new run id (the trainer restarted) starts over; ≥3 s without any frame or
heartbeat makes the feed stale and it reconnects by itself.

Used from one thread (the UI's feed worker); only `send` may be called from others.
"""

from __future__ import annotations

import collections
import itertools
import os
import queue
import threading
import time
from collections.abc import Iterable
from typing import Any

import msgpack
import zmq

from .codec import ProtocolError, ProtocolVersionError, check_version, dict_to_frame
from .control import ControlReply
from .endpoints import DEFAULT_PUB, control_endpoint_for
from .errors import UserError
from .frames import Frame
from .security import secure_client
from .seq_merge import SeqMerger

STALE_AFTER = 3.0  # seconds without a frame or heartbeat (~3 missed beats)
DISCONNECTED_AFTER = 10.0
REPLY_TIMEOUT = 15.0  # a user request without a reply by then gets a local error reply
MAX_PER_POLL = 5000  # frames handed out per poll, so a big history never freezes the UI


class LiveFeed:
    """Frames of a live run, in seq order, history first, no gaps, no duplicates."""

    def __init__(
        self,
        pub_endpoint: str = DEFAULT_PUB,
        control_endpoint: str | None = None,
        *,
        kinds: Iterable[str] | None = None,
        curve_dir: str | os.PathLike | None = None,
        heartbeats: bool = False,
    ):
        self.pub_endpoint = pub_endpoint
        self.control_endpoint = control_endpoint or control_endpoint_for(pub_endpoint)
        # With a kind filter seqs jump by design, so gaps cannot be told from filtering: no gap filling then.
        self.kinds = sorted(set(kinds)) if kinds is not None else None
        self.curve_dir = curve_dir
        self.heartbeats = heartbeats
        self.state = "connecting"
        self.frames_received = 0
        self.gaps_filled = 0
        self.reconnects = 0
        self.run_id: str | None = None
        self.last_heartbeat: Frame | None = None
        self.hello: dict = {}
        self.error = ""  # the last thing that went wrong, for the UI's status line
        self._ctx = zmq.Context.instance()
        self._ids = itertools.count(1)
        self._ids_lock = threading.Lock()
        self._outbox: queue.SimpleQueue[tuple[int, str, dict]] = queue.SimpleQueue()
        self._user_requests: dict[Any, tuple[str, float]] = {}
        self._ready: collections.deque = collections.deque()
        self._merge = SeqMerger(filtered=self.kinds is not None)  # frames held until the seqs before them are in
        self._old_runs: set[str] = set()
        self._synced = False
        self._hello_id: str | None = None
        self._snap_id: str | None = None
        self._snap_frames: list[bytes] = []
        self._snap_sent = 0.0
        self._last_contact = time.monotonic()
        self._last_progress = time.monotonic()  # last hello/snapshot reply, or the last (re)connect
        self._last_reconnect = time.monotonic()
        self._ever_contacted = False
        self._sub: zmq.Socket | None = None
        self._dealer: zmq.Socket | None = None
        self._connect()

    # ----------------------------------------------------------------- sockets
    def _connect(self) -> None:
        sub = self._ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.RCVHWM, 100_000)
        dealer = self._ctx.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.setsockopt(zmq.RCVHWM, 64)  # snapshot chunks wait in the trainer, not here, while we catch up
        if self.curve_dir is not None:
            secure_client(sub, self.curve_dir)
            secure_client(dealer, self.curve_dir)
        topics = [k.encode() for k in self.kinds] + [b"heartbeat"] if self.kinds is not None else [b""]
        for topic in topics:
            sub.setsockopt(zmq.SUBSCRIBE, topic)
        for sock, endpoint in ((sub, self.pub_endpoint), (dealer, self.control_endpoint)):
            try:
                sock.connect(endpoint)  # SUB first: subscribe, then ask for the history
            except zmq.ZMQError as exc:
                sub.close()
                dealer.close()
                raise UserError(f"cannot connect to {endpoint}: {zmq.strerror(exc.errno)}") from None
        self._sub, self._dealer = sub, dealer
        self._synced = False
        self._last_progress = time.monotonic()
        self._say_hello()

    def _close_sockets(self) -> None:
        for sock in (self._sub, self._dealer):
            if sock is not None:
                sock.close()
        self._sub = self._dealer = None

    def _reconnect(self) -> None:
        self._close_sockets()
        self.reconnects += 1
        self._snap_id = None
        self._connect()

    def _request(self, req_id: Any, cmd: str, args: dict) -> None:
        msg = msgpack.packb({"id": req_id, "cmd": cmd, "args": args}, use_bin_type=True)
        try:
            self._dealer.send(msg, flags=zmq.NOBLOCK)  # type: ignore[union-attr]
        except zmq.Again:
            self.error = f"control queue to {self.control_endpoint} is full; {cmd!r} not sent"

    def _say_hello(self) -> None:
        self._hello_id = f"feed-hello-{self._next_id()}"
        self._request(self._hello_id, "hello", {})

    def _ask_snapshot(self, from_seq: int, to_seq: int | None = None) -> None:
        self._snap_id = f"feed-snapshot-{self._next_id()}"
        self._snap_frames = []
        self._snap_sent = time.monotonic()
        args: dict[str, Any] = {"from_seq": from_seq}
        if to_seq is not None:
            args["to_seq"] = to_seq
        if self.kinds is not None:
            args["kinds"] = list(self.kinds)
        self._request(self._snap_id, "snapshot", args)

    def _next_id(self) -> int:
        with self._ids_lock:
            return next(self._ids)

    # ----------------------------------------------------------------- public
    @property
    def last_seq(self) -> int:
        """Seq of the last frame handed out (or skipped as an unknown kind); -1 before any."""
        return self._merge.last_seq

    @property
    def gaps_skipped(self) -> int:
        """Seq ranges nobody could send (the trainer keeps no recording)."""
        return self._merge.gaps_skipped

    def send(self, cmd: str, **args) -> int:
        """Queue a control request (any thread); its ControlReply comes out of poll()."""
        req_id = self._next_id()
        self._outbox.put((req_id, cmd, args))
        return req_id

    def poll(self, timeout_ms: int = 100) -> list[Frame | ControlReply]:
        """Frames in seq order and replies to `send`; waits up to timeout_ms when there is nothing yet."""
        if self._sub is None:
            return self._take_ready()  # closed, or stopped by an incompatible trainer (see `error`)
        while True:
            try:
                req_id, cmd, args = self._outbox.get_nowait()
            except queue.Empty:
                break
            self._user_requests[req_id] = (cmd, time.monotonic())
            self._request(req_id, cmd, args)
        wait = 0 if self._ready else timeout_ms
        poller = zmq.Poller()
        poller.register(self._sub, zmq.POLLIN)
        poller.register(self._dealer, zmq.POLLIN)
        events = dict(poller.poll(wait))
        try:
            if self._dealer in events:
                self._drain(self._dealer, self._on_reply)
            if self._sub in events and self._sub is not None:
                self._drain(self._sub, self._on_live)
            self._check_time()
        except ProtocolVersionError as exc:
            # A trainer newer than this client: say so (naming both versions) and stop, rather than misread it.
            self.error = str(exc)
            self._close_sockets()
            self.state = "disconnected"
        return self._take_ready()

    def _take_ready(self) -> list:
        out = []
        while self._ready and len(out) < MAX_PER_POLL:
            out.append(self._ready.popleft())
        return out

    def close(self) -> None:
        self._close_sockets()
        self.state = "disconnected"

    def __enter__(self) -> "LiveFeed":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ----------------------------------------------------------------- incoming
    def _drain(self, sock: zmq.Socket, handle, limit: int = 20_000) -> None:
        for _ in range(limit):
            if len(self._ready) >= 2 * MAX_PER_POLL:
                return  # let the caller take these first; the sockets' queues hold the rest
            try:
                parts = sock.recv_multipart(flags=zmq.NOBLOCK)
            except zmq.Again:
                return
            handle(parts)

    def _contact(self) -> None:
        self._last_contact = time.monotonic()
        self._ever_contacted = True
        if self._synced:
            self.state = "live"

    def _on_live(self, parts: list[bytes]) -> None:
        try:
            data = msgpack.unpackb(parts[-1], raw=False, strict_map_key=False)
        except Exception:
            return  # not msgpack: not ours
        if not isinstance(data, dict) or not isinstance(data.get("seq"), int):
            return
        try:
            check_version(data.get("v"), where=f"frame from {self.pub_endpoint}")
        except ProtocolVersionError:
            raise  # a newer trainer: refuse loudly (poll ends the feed with the message)
        except ProtocolError:
            return  # no usable version: not a lorascope frame
        run_id = data.get("run_id")
        if run_id in self._old_runs:
            return
        self._contact()
        if self.run_id is not None and run_id != self.run_id:
            self._new_run()
            return  # the new run's history (this frame included) comes with its snapshot
        if data.get("kind") == "heartbeat":
            self._on_heartbeat(data)
            return
        self._merge.add(data)
        if self._synced:
            self._advance()

    def _on_heartbeat(self, data: dict) -> None:
        try:
            frame = dict_to_frame(data)
        except ProtocolVersionError:
            raise
        except ProtocolError:
            frame = None
        self.last_heartbeat = frame
        if self.heartbeats and frame is not None:
            self._ready.append(frame)
        last = data.get("last_seq", -1)
        # A dropped last frame leaves no later frame to reveal the gap; the heartbeat's last_seq does.
        if self._synced and self.kinds is None and isinstance(last, int) and last > self.last_seq and self._snap_id is None and self._merge.can_fill:
            self._ask_snapshot(self.last_seq + 1, last)

    def _on_reply(self, parts: list[bytes]) -> None:
        try:
            reply = msgpack.unpackb(parts[-1], raw=False, strict_map_key=False)
        except Exception:
            return
        if not isinstance(reply, dict):
            return
        req_id, ok, data = reply.get("id"), bool(reply.get("ok")), reply.get("data") or {}
        if req_id == self._hello_id:
            self._contact()
            self._last_progress = time.monotonic()
            self._on_hello(ok, data, reply.get("error", ""))
        elif req_id == self._snap_id:
            self._contact()
            self._last_progress = time.monotonic()
            self._on_snapshot(ok, data, reply.get("error", ""))
        elif req_id in self._user_requests:
            cmd, _ = self._user_requests.pop(req_id) if not data.get("more") else self._user_requests[req_id]
            self._ready.append(ControlReply(req_id, ok, reply.get("cmd", cmd), data, reply.get("error", "")))

    def _on_hello(self, ok: bool, data: dict, error: str) -> None:
        self._hello_id = None
        if not ok:
            self.error = f"hello refused: {error}"
            return
        try:
            check_version(data.get("protocol"), where=f"trainer at {self.control_endpoint}")
        except ProtocolVersionError:
            raise
        except ProtocolError:
            pass  # a hello without a version: its frames carry theirs, checked one by one
        self.hello = data
        self.error = ""
        if self.run_id is not None and data.get("run_id") != self.run_id:
            self._forget_run()
        self.run_id = data.get("run_id")
        self._merge.keep_only(lambda frame: frame.get("run_id") == self.run_id)
        self._ask_snapshot(self.last_seq + 1)

    def _on_snapshot(self, ok: bool, data: dict, error: str) -> None:
        if not ok:
            self.error = error
            self._merge.can_fill = False  # no recording on the trainer: live frames only, gaps are skipped
            self._snap_id = None
            self._finish_sync(-1)
            return
        newest = -1
        for payload in data.get("frames", []):
            try:
                frame_map = msgpack.unpackb(payload, raw=False, strict_map_key=False)
            except Exception:
                continue
            if isinstance(frame_map, dict) and frame_map.get("run_id") == self.run_id and isinstance(frame_map.get("seq"), int):
                self._merge.add(frame_map)
                newest = max(newest, frame_map["seq"])
        if data.get("more"):
            self._deliver_chunk(newest)  # a long history flows out as it comes, not all at the end
            return
        self._snap_id = None
        filling = self._synced
        before = self.last_seq
        self._finish_sync(int(data.get("last_seq", -1)))
        if filling and self.last_seq > before:
            self.gaps_filled += 1

    def _deliver_chunk(self, up_to: int) -> None:
        for data in self._merge.take_contiguous(up_to):
            self._deliver(data)

    def _finish_sync(self, snapshot_last: int) -> None:
        if not self._synced:
            self._synced = True
            self.state = "live"
        self._advance(answered_up_to=snapshot_last)

    def _advance(self, answered_up_to: int | None = None) -> None:
        """Deliver what is in order; ask for a missing range (one fill at a time)."""
        frames, missing = self._merge.advance(fill_in_flight=self._snap_id is not None, answered_up_to=answered_up_to)
        for data in frames:
            self._deliver(data)
        if missing is not None:
            self._ask_snapshot(*missing)

    def _deliver(self, data: dict) -> None:
        try:
            frame = dict_to_frame(data)
        except ProtocolVersionError:
            raise
        except ProtocolError as exc:
            self.error = f"bad frame seq={data['seq']}: {exc}"
            return
        if frame is None:
            return  # a kind this version does not know: skipped, its seq still counts
        self.frames_received += 1
        self._ready.append(frame)

    def _forget_run(self) -> None:
        if self.run_id is not None:
            self._old_runs.add(self.run_id)
        self.run_id = None
        self._merge.reset()
        self._synced = False
        self._snap_id = None
        self.state = "connecting"

    def _new_run(self) -> None:
        """The trainer restarted with a new run id: start over with its history."""
        self._forget_run()
        self._say_hello()

    # ----------------------------------------------------------------- time
    def _check_time(self) -> None:
        now = time.monotonic()
        for req_id, (cmd, sent) in list(self._user_requests.items()):
            if now - sent > REPLY_TIMEOUT:
                del self._user_requests[req_id]
                self._ready.append(ControlReply(req_id, False, cmd, {}, f"no reply to {cmd!r} within {REPLY_TIMEOUT:g} s"))
        if self._snap_id is not None and now - self._snap_sent > REPLY_TIMEOUT and self._synced:
            self._snap_id = None  # a lost gap-fill: the next frame asks again
        silent = now - self._last_contact
        if self._ever_contacted and silent >= DISCONNECTED_AFTER:
            self.state = "disconnected"
        elif silent >= STALE_AFTER and self.state == "live":
            self.state = "stale"
        # Before sync, a lost hello/snapshot (trainer restarted under us) stalls us while frames flow.
        stuck = silent if self._synced else now - self._last_progress
        if stuck >= STALE_AFTER and now - self._last_reconnect >= STALE_AFTER:
            self._last_reconnect = now
            if not self._ever_contacted:
                self.error = f"no answer from {self.control_endpoint} yet (is the trainer running, on that port?)"
            self._reconnect()  # new sockets, hello again, catch up from last_seq + 1
