"""The trainer's side of the frame stream: stamp each frame, encode it once, hand it to every sink.

Sinks are tiny (`write_frame(frame, payload)`, `close()`): the recorder, the
publisher, or `NullSink` when publishing is off. The recorder comes first so
that a frame a subscriber sees is already in the file, which is what lets a
late joiner's snapshot (read from the file) cover every published seq.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

from .codec import encode
from .frames import Frame


class FrameSink(Protocol):
    def write_frame(self, frame: Frame, payload: bytes) -> None: ...

    def close(self) -> None: ...


class NullSink:
    """A sink that discards frames (publishing or recording switched off)."""

    def write_frame(self, frame: Frame, payload: bytes) -> None:
        pass

    def close(self) -> None:
        pass


class FrameStream:
    """Stamps frames and hands each to every sink: recording first, then publisher."""

    def __init__(self, run_id: str, sinks: list):
        self.run_id = run_id
        self.sinks = list(sinks)
        self.last_seq = -1
        self._lock = threading.Lock()  # observers may emit from more than one thread; seqs stay gapless

    def emit(self, frame: Frame) -> Frame:
        """Set run_id, the next seq and (if unset) wall_time; encode once; write to every sink."""
        with self._lock:
            frame.run_id = self.run_id
            frame.seq = self.last_seq + 1
            if not frame.wall_time:
                frame.wall_time = time.time()
            payload = encode(frame)
            self.last_seq = frame.seq
            for sink in self.sinks:
                sink.write_frame(frame, payload)
        return frame

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
