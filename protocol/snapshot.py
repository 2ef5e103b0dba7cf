"""History for late joiners, read from the recording file the trainer is appending to.

The recorder writes each frame before the publisher sends it, so every seq a
subscriber can have seen is already in the file: a snapshot from the file plus
the live stream covers the whole run (the ZeroMQ guide's Clone pattern).
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterator
from typing import Any

from .errors import UserError
from .recording import RunReader

CHUNK_FRAMES = 256
CHUNK_BYTES = 1 << 20


class RecordingSource:
    """The control thread's read-only view of the live recording (it may not exist yet)."""

    def __init__(self, path: str | os.PathLike | None):
        self.path = pathlib.Path(path) if path is not None else None
        self._reader: RunReader | None = None
        self._status_pos = 0  # index position up to which status records were searched
        self._state = "starting"

    def _open(self) -> RunReader | None:
        if self._reader is None and self.path is not None and self.path.exists():
            try:
                self._reader = RunReader(self.path, use_sidecar=False)
            except UserError:
                return None  # created but its header not written yet: no history so far
        return self._reader

    def last_seq_and_state(self) -> tuple[int, str]:
        """Seq of the last recorded frame (-1 if none) and the state of the last Status frame."""
        reader = self._open()
        if reader is None:
            return -1, "unknown" if self.path is None else self._state
        idx = reader.refresh()
        if "status" in idx.kind_names:
            code = idx.kind_names.index("status")
            for i in range(len(idx) - 1, self._status_pos - 1, -1):  # newest first; stop at the last look
                if idx.kind_codes[i] == code:
                    self._state = getattr(reader.frame_at(i), "state", self._state)
                    break
        self._status_pos = len(idx)
        return (idx.seqs[-1] if len(idx) else -1), self._state

    def snapshot_chunks(self, args: dict[str, Any]) -> Iterator[tuple[list[bytes], int, bool]]:
        """Validate the snapshot args now; return chunks of (payloads, last_seq, more) to send."""
        from_seq = args.get("from_seq", 0)
        to_seq = args.get("to_seq")
        kinds = args.get("kinds")
        if not isinstance(from_seq, int) or isinstance(from_seq, bool) or from_seq < 0:
            raise UserError(f"snapshot: from_seq must be an integer >= 0, got {from_seq!r}")
        if to_seq is not None and (not isinstance(to_seq, int) or isinstance(to_seq, bool)):
            raise UserError(f"snapshot: to_seq must be an integer, got {to_seq!r}")
        if kinds is not None and (not isinstance(kinds, list) or not all(isinstance(k, str) for k in kinds)):
            raise UserError(f"snapshot: kinds must be a list of kind names, got {kinds!r}")
        if self.path is None:
            raise UserError("snapshot: this trainer keeps no recording, so it has no history to send")
        reader = self._open()
        if reader is None:
            return iter([([], -1, False)])
        idx = reader.refresh()
        end = len(idx)
        last_seq = idx.seqs[end - 1] if end else -1
        if to_seq is not None:
            last_seq = min(last_seq, to_seq)
        return self._chunks(reader, from_seq, last_seq, end, set(kinds) if kinds is not None else None)

    @staticmethod
    def _chunks(reader: RunReader, from_seq: int, last_seq: int, end: int, kinds: set[str] | None):
        idx = reader.index()
        frames: list[bytes] = []
        size = 0
        i = idx.position_of_seq(from_seq)
        while i < end and idx.seqs[i] <= last_seq:
            if kinds is None or idx.kind(i) in kinds:
                if len(frames) >= CHUNK_FRAMES or size >= CHUNK_BYTES:
                    yield frames, last_seq, True
                    frames, size = [], 0
                payload = reader.payload_at(i)
                frames.append(payload)
                size += len(payload)
            i += 1
        yield frames, last_seq, False

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
