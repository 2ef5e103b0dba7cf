"""The control channel: a ROUTER in the trainer, DEALERs in UIs and CLIs.

A request is a msgpack map {"id": any, "cmd": str, "args": map}; every request
gets a reply {"id", "ok", "cmd", "data", "error"}. The server answers hello,
ping and snapshot itself, on its own thread, from the recording file; every
other command is handed to the training loop through `poll()`, which replies
when it has acted (between optimizer steps). A malformed request gets an error
reply naming what was wrong and never reaches the loop.
"""

from __future__ import annotations

import itertools
import os
import queue
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import msgpack
import zmq

from .endpoints import DEFAULT_CONTROL
from .errors import UserError
from .frames import PROTOCOL_MAJOR, PROTOCOL_MINOR
from .publisher import bind_server_socket, release_port
from .security import check_bind, release_server, secure_client
from .snapshot import RecordingSource

# Commands the training loop answers (through ControlServer.poll).
LOOP_COMMANDS = ("pause", "resume", "step", "save", "stop", "edit", "cancel_edit", "continue")
# Commands the control thread answers itself.
SERVER_COMMANDS = ("hello", "ping", "snapshot")
# Reply messages queued per client before the server waits for it to read (a snapshot chunk is up
# to 1 MiB, so this bounds the memory one slow client can pin).
SNAPSHOT_WINDOW = 64


class ControlError(Exception):
    """The server replied with an error, or did not reply in time; the message says which."""


@dataclass
class ControlReply:
    """A reply to a request sent with `LiveFeed.send`."""

    id: Any
    ok: bool
    cmd: str = ""
    data: dict = field(default_factory=dict)
    error: str = ""


def pack_reply(req_id: Any, cmd: str, ok: bool, data: dict | None = None, error: str = "") -> bytes:
    return msgpack.packb({"id": req_id, "ok": ok, "cmd": cmd, "data": data or {}, "error": error}, use_bin_type=True)


class ControlRequest:
    """One request for the training loop. Reply exactly once (later calls are ignored)."""

    def __init__(self, server: "ControlServer", envelope: list[bytes], req_id: Any, cmd: str, args: dict):
        self._server = server
        self._envelope = envelope
        self.id = req_id
        self.cmd = cmd
        self.args = args
        self.replied = False
        self._lock = threading.Lock()

    def reply(self, data: dict | None = None) -> None:
        """Ok reply with `data` (a msgpack-able map)."""
        self._answer(True, data, "")

    def fail(self, message: str) -> None:
        """Error reply: `message` says what was wrong."""
        self._answer(False, None, message)

    def _answer(self, ok: bool, data: dict | None, error: str) -> None:
        with self._lock:
            if self.replied:
                return
            self.replied = True
        try:
            payload = pack_reply(self.id, self.cmd, ok, data, error)
        except (TypeError, ValueError) as exc:  # the loop handed back something msgpack cannot carry
            payload = pack_reply(self.id, self.cmd, False, None, f"internal error: reply not serialisable ({exc})")
        self._server._enqueue(self._envelope + [payload])

    def __repr__(self) -> str:
        return f"ControlRequest(id={self.id!r}, cmd={self.cmd!r}, args={self.args!r})"


def parse_request(payload: bytes, known: Iterable[str]) -> tuple[Any, str, dict]:
    """(id, cmd, args) of a request; ValueError with the reply's error text (and the id if any)."""
    try:
        msg = msgpack.unpackb(payload, raw=False, strict_map_key=False)
    except Exception as exc:
        raise _BadRequest(None, "", f"request is not msgpack ({exc})") from None
    if not isinstance(msg, dict):
        raise _BadRequest(None, "", f"request must be a map with id, cmd and args, got {type(msg).__name__}")
    if "id" not in msg:
        raise _BadRequest(None, str(msg.get("cmd", "")), "request has no 'id'")
    req_id, cmd, args = msg["id"], msg.get("cmd"), msg.get("args", {})
    if not isinstance(cmd, str) or not cmd:
        raise _BadRequest(req_id, "", "request has no 'cmd' string")
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise _BadRequest(req_id, cmd, f"'args' must be a map, got {type(args).__name__}")
    if cmd not in known:
        raise _BadRequest(req_id, cmd, f"unknown command {cmd!r} (known: {', '.join(known)})")
    return req_id, cmd, args


class _BadRequest(ValueError):
    def __init__(self, req_id: Any, cmd: str, message: str):
        super().__init__(message)
        self.req_id, self.cmd = req_id, cmd


# --------------------------------------------------------------------------- server
class ControlServer:
    """ROUTER on its own thread. The training loop calls `poll()` between steps."""

    def __init__(
        self,
        bind: str = DEFAULT_CONTROL,
        *,
        recording: str | os.PathLike | None,
        run_id: str,
        pub_endpoint: str,
        curve_dir: str | os.PathLike | None = None,
        insecure: bool = False,
        extra_commands: Iterable[str] = (),
    ):
        check_bind(bind, curve_dir, insecure)
        self.run_id = run_id
        self.pub_endpoint = pub_endpoint
        self.commands = tuple(SERVER_COMMANDS) + tuple(LOOP_COMMANDS) + tuple(extra_commands)
        self._source = RecordingSource(recording)
        self._ctx = zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.ROUTER)
        self._sock.setsockopt(zmq.LINGER, 0)
        # Mandatory routing: at the high-water mark a send says EAGAIN instead of dropping, so a
        # long snapshot is paced to the client instead of silently losing chunks.
        self._sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self._sock.setsockopt(zmq.SNDHWM, SNAPSHOT_WINDOW)
        self._curve = curve_dir is not None
        self.endpoint = bind_server_socket(self._sock, bind, curve_dir)
        self._incoming: queue.SimpleQueue[ControlRequest] = queue.SimpleQueue()
        self._outgoing: queue.SimpleQueue[list[bytes]] = queue.SimpleQueue()
        self._wake_lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe()  # replies from the loop wake the control thread's poller
        os.set_blocking(self._wake_w, False)
        os.set_blocking(self._wake_r, False)
        self._stop = False
        self.requests_served = 0
        self._thread = threading.Thread(target=self._run, name="lorascope-control", daemon=True)
        self._thread.start()

    # ----------------------------------------------------------------- loop side
    def poll(self) -> list[ControlRequest]:
        """Requests waiting for the training loop (never blocks)."""
        out = []
        while True:
            try:
                out.append(self._incoming.get_nowait())
            except queue.Empty:
                return out

    def _enqueue(self, parts: list[bytes]) -> None:
        self._outgoing.put(parts)
        self._wake()

    def _wake(self) -> None:
        # Under the lock: once close() has closed the pipe, its fd number may belong to another
        # file (the recording!), so a late reply must not write to it.
        with self._wake_lock:
            if self._wake_w is None:
                return
            try:
                os.write(self._wake_w, b"!")
            except (BlockingIOError, OSError):
                pass  # pipe full: the thread is awake anyway

    # ----------------------------------------------------------------- control thread
    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        streams: list[tuple[list[bytes], _Chunks]] = []  # snapshot replies still being sent
        backlog: list[list[bytes]] = []
        try:
            while not self._stop:
                busy = bool(streams or backlog)
                events = dict(poller.poll(timeout=5 if busy else 500))
                if self._wake_r in events:
                    try:
                        os.read(self._wake_r, 4096)
                    except BlockingIOError:
                        pass
                while True:
                    try:
                        backlog.append(self._outgoing.get_nowait())
                    except queue.Empty:
                        break
                backlog = [parts for parts in backlog if not self._send(parts)]
                if self._sock in events:
                    for _ in range(100):
                        try:
                            parts = self._sock.recv_multipart(flags=zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        self._handle(parts, streams)
                streams = [s for s in streams if self._pump(s)]
        finally:
            release_port(self._sock, self.endpoint)
            self._sock.close()
            self._source.close()

    def _send(self, parts: list[bytes]) -> bool:
        """True when sent or undeliverable (peer gone); False to retry later (high-water mark)."""
        try:
            self._sock.send_multipart(parts, flags=zmq.NOBLOCK)
            return True
        except zmq.Again:
            return False
        except zmq.ZMQError as exc:
            if exc.errno == zmq.EHOSTUNREACH:
                return True  # the client went away: nobody to answer
            raise

    def _pump(self, stream: tuple[list[bytes], "_Chunks"], budget: int = 64) -> bool:
        """Send up to `budget` chunks of a snapshot; False once it is finished or its client gone."""
        envelope, chunks = stream
        for _ in range(budget):
            try:
                payload = chunks.pending if chunks.pending is not None else next(chunks, None)
            except Exception as exc:  # e.g. a corrupt record: tell the client, keep serving
                self._send(envelope + [pack_reply(chunks.req_id, "snapshot", False, None, f"snapshot failed: {exc}")])
                return False
            if payload is None:
                return False
            try:
                self._sock.send_multipart(envelope + [payload], flags=zmq.NOBLOCK)
                chunks.pending = None
            except zmq.Again:
                chunks.pending = payload
                return True
            except zmq.ZMQError as exc:
                if exc.errno == zmq.EHOSTUNREACH:
                    return False
                raise
        return True

    def _handle(self, parts: list[bytes], streams: list) -> None:
        envelope, payload = parts[:-1], parts[-1]
        self.requests_served += 1
        try:
            req_id, cmd, args = parse_request(payload, self.commands)
        except _BadRequest as exc:
            self._send(envelope + [pack_reply(exc.req_id, exc.cmd, False, None, str(exc))])
            return
        try:
            if cmd == "hello":
                self._send(envelope + [pack_reply(req_id, cmd, True, self._hello())])
            elif cmd == "ping":
                self._send(envelope + [pack_reply(req_id, cmd, True, {"pong": True, "time": time.time()})])
            elif cmd == "snapshot":
                streams.append((envelope, _Chunks(req_id, self._source.snapshot_chunks(args))))
            else:
                self._incoming.put(ControlRequest(self, envelope, req_id, cmd, args))
        except UserError as exc:  # a bad argument, or a recording we cannot read: say so, stay up
            self._send(envelope + [pack_reply(req_id, cmd, False, None, str(exc))])
        except Exception as exc:  # noqa: BLE001 - the control thread must outlive any one request
            self._send(envelope + [pack_reply(req_id, cmd, False, None, f"internal error in {cmd!r}: {type(exc).__name__}: {exc}")])

    def _hello(self) -> dict:
        last_seq, state = self._source.last_seq_and_state()
        return {
            "run_id": self.run_id,
            "protocol": [PROTOCOL_MAJOR, PROTOCOL_MINOR],
            "pub_endpoint": self.pub_endpoint,
            "control_endpoint": self.endpoint,
            "last_seq": last_seq,
            "state": state,
            "commands": list(self.commands),
        }

    def close(self) -> None:
        if self._stop:
            return
        self._stop = True
        self._wake()  # so the thread sees _stop now, not at its next poll timeout
        self._thread.join(timeout=5.0)
        with self._wake_lock:
            os.close(self._wake_r)
            os.close(self._wake_w)
            self._wake_w = None
        if self._curve:
            release_server(self._ctx)


class _Chunks:
    """Snapshot reply messages, made lazily; holds back the one the socket refused (high-water mark)."""

    def __init__(self, req_id: Any, chunks: Iterator[tuple[list[bytes], int, bool]]):
        self.req_id = req_id
        self._chunks = chunks
        self.pending: bytes | None = None

    def __iter__(self):
        return self

    def __next__(self) -> bytes:
        frames, last_seq, more = next(self._chunks)
        return pack_reply(self.req_id, "snapshot", True, {"frames": frames, "last_seq": last_seq, "more": more})


# --------------------------------------------------------------------------- client
class ControlClient:
    """A blocking DEALER for CLIs and tests: one request at a time."""

    _ids = itertools.count(1)

    def __init__(self, endpoint: str = DEFAULT_CONTROL, *, curve_dir: str | os.PathLike | None = None):
        self.endpoint = endpoint
        self._sock = zmq.Context.instance().socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        if curve_dir is not None:
            secure_client(self._sock, curve_dir)
        try:
            self._sock.connect(endpoint)
        except zmq.ZMQError as exc:
            self._sock.close()
            raise UserError(f"cannot connect to {endpoint}: {exc.strerror}") from None

    def request(self, cmd: str, timeout: float = 5.0, **args) -> dict:
        """Send one request and return the reply's data; ControlError on an error reply or timeout.

        A snapshot's several reply messages are joined: data["frames"] holds all payloads.
        """
        req_id = f"{os.getpid()}-{next(self._ids)}"
        self._sock.send(msgpack.packb({"id": req_id, "cmd": cmd, "args": args}, use_bin_type=True))
        deadline = time.monotonic() + timeout
        frames: list[bytes] = []
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._sock.poll(int(remaining * 1000) + 1):
                raise ControlError(f"no reply to {cmd!r} from {self.endpoint} within {timeout:g} s (is the trainer running?)")
            reply = msgpack.unpackb(self._sock.recv_multipart()[-1], raw=False, strict_map_key=False)
            if not isinstance(reply, dict) or reply.get("id") != req_id:
                continue  # a late reply to an earlier request that timed out
            if not reply.get("ok"):
                raise ControlError(reply.get("error") or f"{cmd!r} failed")
            data = reply.get("data") or {}
            if "more" not in data:
                return data
            frames.extend(data.get("frames", []))
            if not data["more"]:
                return {**data, "frames": frames}
            deadline = time.monotonic() + timeout  # the timeout is per chunk: a long history may take a while

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> "ControlClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
