"""The PUB side: frames go out from a thread of their own, so the training step never waits on a socket."""

from __future__ import annotations

import os
import queue
import threading
import time

import zmq

from .codec import encode
from .endpoints import DEFAULT_PUB, normalize_bind
from .errors import UserError
from .frames import Frame, Heartbeat, Status
from .security import check_bind, release_server, secure_server

# Explicit high-water mark: with the default 1000 a subscriber that falls behind
# loses frames silently; a larger one absorbs bursts (the UI fills real gaps from
# the recording anyway). At the mark, PUB drops for that subscriber; never blocks.
SNDHWM = 20_000
QUEUE_SIZE = 10_000
HEARTBEAT_INTERVAL = 1.0


def bind_socket(sock: zmq.Socket, bind: str) -> str:
    """Bind and return the actual endpoint; a busy or bad address becomes a UserError."""
    try:
        sock.bind(normalize_bind(bind))
    except zmq.ZMQError as exc:
        if exc.errno == zmq.EADDRINUSE:
            reason = "address already in use (another trainer running? choose another port)"
        else:
            reason = zmq.strerror(exc.errno)
        raise UserError(f"cannot bind {bind}: {reason}") from None
    return sock.getsockopt_string(zmq.LAST_ENDPOINT)


def bind_server_socket(sock: zmq.Socket, bind: str, curve_dir: str | os.PathLike | None) -> str:
    """Curve-secure (when keys are given) and bind a trainer-side socket; on failure close it and say why."""
    try:
        if curve_dir is not None:
            secure_server(sock, curve_dir)
        return bind_socket(sock, bind)
    except BaseException:
        sock.close()
        if curve_dir is not None:
            release_server(sock.context)
        raise


def release_port(sock: zmq.Socket, endpoint: str) -> None:
    """Unbind before closing: a close frees the port only later, on ZeroMQ's I/O thread."""
    try:
        sock.unbind(endpoint)
    except zmq.ZMQError:
        pass


class Publisher:
    """A sink: publishes each frame as multipart [kind, payload]; heartbeats when idle.

    `write_frame` only enqueues (a bounded queue; when it is full the frame is
    counted in `dropped` and skipped, which never affects the recording).
    """

    def __init__(self, bind: str = DEFAULT_PUB, *, curve_dir: str | os.PathLike | None = None, insecure: bool = False):
        check_bind(bind, curve_dir, insecure)
        self._ctx = zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.PUB)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.SNDHWM, SNDHWM)
        self._curve = curve_dir is not None
        self.endpoint = bind_server_socket(self._sock, bind, curve_dir)
        self.dropped = 0
        self.published = 0
        self._last_seq_offered = -1
        self._queue: queue.Queue[tuple[Frame, bytes] | None] = queue.Queue(maxsize=QUEUE_SIZE)
        self._closed = False
        # The socket is handed to the thread here and used by it alone from now on.
        self._thread = threading.Thread(target=self._run, name="lorascope-publisher", daemon=True)
        self._thread.start()

    def write_frame(self, frame: Frame, payload: bytes) -> None:
        if self._closed:
            return
        # Heartbeats announce this seq even if the frame is dropped below, so a subscriber can ask for it.
        self._last_seq_offered = max(self._last_seq_offered, frame.seq)
        try:
            self._queue.put_nowait((frame, payload))
        except queue.Full:
            self.dropped += 1

    def _run(self) -> None:
        run_id, step, last_seq, state = "", 0, -1, "starting"
        last_sent = time.monotonic()
        try:
            while True:
                wait = max(0.0, HEARTBEAT_INTERVAL - (time.monotonic() - last_sent))
                try:
                    item = self._queue.get(timeout=wait)
                except queue.Empty:
                    item = False
                if item is None:
                    return
                if item is False:
                    last_seq = max(last_seq, self._last_seq_offered)
                    if last_seq >= 0 or run_id:
                        beat = Heartbeat(run_id=run_id, seq=last_seq, step=step, wall_time=time.time(), state=state, last_seq=last_seq)
                        self._send(beat, encode(beat))
                    last_sent = time.monotonic()
                    continue
                frame, payload = item
                run_id, step, last_seq = frame.run_id, frame.step, max(last_seq, frame.seq)
                if isinstance(frame, Status):
                    state = frame.state
                self._send(frame, payload)
                self.published += 1
                last_sent = time.monotonic()
        finally:
            release_port(self._sock, self.endpoint)
            self._sock.close(linger=1000)  # let the last frames (run end) reach connected subscribers

    def _send(self, frame: Frame, payload: bytes) -> None:
        try:
            self._sock.send_multipart([frame.kind.encode("ascii"), payload], flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            self.dropped += 1  # PUB drops at the high-water mark rather than raising; this is belt and braces

    def close(self) -> None:
        """Send what is queued (bounded wait), then stop the thread and close the socket."""
        if self._closed:
            return
        self._closed = True
        try:
            self._queue.put(None, timeout=2.0)
        except queue.Full:
            pass
        self._thread.join(timeout=5.0)
        if self._curve:
            release_server(self._ctx)
