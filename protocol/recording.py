"""Run recordings (`.lsr`): the published frames, appended to a file as they are made.

Layout (little-endian; see SPEC.md):

    file header   16 bytes  b"LSRECORD", u16 protocol major, u16 protocol minor, 4 reserved
    record        44-byte header + payload, repeated:
                  b"LR", 2 reserved, u32 payload length, u32 crc32(payload),
                  i64 seq, i64 step, 16 bytes kind (ASCII, zero-padded)
                  then the frame's msgpack payload, exactly as published

The header repeats seq, step and kind so that a reader can index a file by
hopping from header to header without touching msgpack. A writer killed
mid-record leaves a torn tail: the reader stops before it and says where.
"""

from __future__ import annotations

import mmap
import os
import pathlib
import struct
import threading
import zlib
from collections.abc import Iterable, Iterator

import msgpack

from .codec import ProtocolError, ProtocolVersionError, check_version, decode
from .errors import UserError
from .frames import PROTOCOL_MAJOR, PROTOCOL_MINOR, Frame, RunStart
from .recording_index import IndexEntry, RecordingIndex, load_sidecar, save_sidecar  # noqa: F401

FILE_MAGIC = b"LSRECORD"
FILE_HEADER = struct.Struct("<8sHH4x")
RECORD_MARKER = b"LR"
RECORD_HEADER = struct.Struct("<2s2xIIqq16s")
SUFFIX = ".lsr"
# Writing the sidecar index costs a file; below this many records a scan is instant anyway.
SIDECAR_MIN_RECORDS = 5000


class RecordingVersionError(UserError, ProtocolVersionError):
    """A recording (or a frame in it) from a newer major protocol version."""


class CorruptRecord(UserError):
    """A complete record whose payload fails its crc32."""


def pack_record(frame: Frame, payload: bytes) -> bytes:
    """Header + payload of one record, as the recorder appends it."""
    kind = frame.kind.encode("ascii")
    if len(kind) > 16:
        raise ValueError(f"frame kind {frame.kind!r} is longer than 16 bytes")
    header = RECORD_HEADER.pack(RECORD_MARKER, len(payload), zlib.crc32(payload), frame.seq, frame.step, kind)
    return header + payload


# --------------------------------------------------------------------------- writing
class RunRecorder:
    """A sink that appends every frame to a `.lsr` file, one os-level write per frame.

    Each record goes to the kernel with a single `os.write` (no Python buffer), so
    it survives a SIGKILL of the writer; only a machine crash can lose the tail.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = pathlib.Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        except FileExistsError:
            raise UserError(f"{self.path}: a recording already exists there; refusing to overwrite it") from None
        except OSError as exc:
            raise UserError(f"{self.path}: cannot create the recording ({exc.strerror})") from None
        self._lock = threading.Lock()
        self.frames_written = 0
        self._write(FILE_HEADER.pack(FILE_MAGIC, PROTOCOL_MAJOR, PROTOCOL_MINOR))

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)  # type: ignore[arg-type]
            view = view[n:]

    def write_frame(self, frame: Frame, payload: bytes) -> None:
        record = pack_record(frame, payload)
        with self._lock:
            if self._fd is None:
                raise ValueError(f"{self.path}: recorder is closed")
            self._write(record)
            self.frames_written += 1

    def close(self) -> None:
        with self._lock:
            if self._fd is None:
                return
            try:
                os.fsync(self._fd)
            except OSError:
                pass  # e.g. a pipe or a filesystem without fsync: the data is written either way
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunRecorder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------------- reading
class RunReader:
    """Reads a recording, also one that is still being written (call `refresh`).

    Iterating yields typed frames in order; unknown kinds are skipped; a torn
    last record ends the iteration and is described in `torn`.
    """

    def __init__(self, path: str | os.PathLike, *, use_sidecar: bool = True):
        self.path = pathlib.Path(path)
        self.torn: str | None = None
        self._use_sidecar = use_sidecar
        self._index: RecordingIndex | None = None
        self._mm: mmap.mmap | None = None
        self._mapped_size = 0
        try:
            self._file = open(self.path, "rb")
        except FileNotFoundError:
            raise UserError(f"{self.path}: no such recording") from None
        except IsADirectoryError:
            raise UserError(f"{self.path}: is a directory, not a recording (.lsr file)") from None
        except OSError as exc:
            raise UserError(f"{self.path}: cannot open ({exc.strerror})") from None
        head = self._file.read(FILE_HEADER.size)
        if len(head) < FILE_HEADER.size or not head.startswith(FILE_MAGIC):
            self._file.close()
            raise UserError(f"{self.path}: not a lorascope recording (no {FILE_MAGIC.decode()} header)")
        _, major, minor = FILE_HEADER.unpack(head)
        try:
            check_version([major, minor], where=str(self.path))
        except ProtocolVersionError as exc:
            self._file.close()
            raise RecordingVersionError(str(exc)) from None
        self.version = (major, minor)

    # ----------------------------------------------------------------- index
    def _map(self) -> mmap.mmap | None:
        size = os.fstat(self._file.fileno()).st_size
        if self._mm is None or size != self._mapped_size:
            if self._mm is not None:
                self._mm.close()
            self._mm = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ) if size else None
            self._mapped_size = size
        return self._mm

    def index(self) -> RecordingIndex:
        """Offsets, lengths, seqs, steps and kinds of all complete records (headers only)."""
        if self._index is None:
            self._index = (load_sidecar(self.path) if self._use_sidecar else None) or RecordingIndex()
            if self._index.end < FILE_HEADER.size:
                self._index.end = FILE_HEADER.size
            cached_records = len(self._index)
            self.refresh()
            if self._use_sidecar and len(self._index) >= SIDECAR_MIN_RECORDS and len(self._index) != cached_records:
                save_sidecar(self.path, self._index)
        return self._index

    def refresh(self) -> RecordingIndex:
        """Index records appended since the last look (the writer may still be running)."""
        if self._index is None:
            return self.index()
        mm = self._map()
        if mm is not None:
            self._index.scan(mm, self._index.end, len(mm), RECORD_HEADER, RECORD_MARKER)
        self._update_torn()
        return self._index

    def _update_torn(self) -> None:
        idx = self._index
        size = self._mapped_size
        if idx is not None and idx.end < size:
            self.torn = f"{self.path.name}: last record torn at byte {idx.end} (trainer killed mid-write?)"
        else:
            self.torn = None

    # ----------------------------------------------------------------- payloads
    def payload_at(self, i: int) -> bytes:
        """The raw msgpack payload of record `i` of the index, crc-checked."""
        idx = self.index()
        start = idx.offsets[i] + RECORD_HEADER.size
        end = start + idx.lengths[i]
        mm = self._mm if self._mm is not None and end <= self._mapped_size else self._map()  # remap only if it grew
        payload = mm[start:end]  # type: ignore[index]
        crc = RECORD_HEADER.unpack_from(mm, idx.offsets[i])[2]  # type: ignore[arg-type]
        if zlib.crc32(payload) != crc:
            raise CorruptRecord(f"{self.path}: record seq={idx.seqs[i]} at byte {idx.offsets[i]} is corrupt (crc mismatch)")
        return payload

    def frame_at(self, i: int) -> Frame | None:
        """The typed frame of record `i` of the index (None for a kind this version does not know)."""
        payload = self.payload_at(i)
        try:
            return decode(payload)
        except ProtocolVersionError as exc:
            raise RecordingVersionError(f"{self.path}: {exc}") from None
        except ProtocolError as exc:
            raise UserError(f"{self.path}: record at byte {self.index().offsets[i]}: {exc}") from None

    def _positions(self, kinds, start_step, end_step) -> Iterator[int]:
        return self.index().positions(kinds=kinds, start_step=start_step, end_step=end_step)

    def __iter__(self) -> Iterator[Frame]:
        return self.frames()

    def frames(
        self,
        kinds: Iterable[str] | None = None,
        start_step: int | None = None,
        end_step: int | None = None,
    ) -> Iterator[Frame]:
        """Frames in file order, only the given kinds and steps in [start_step, end_step]; decodes only those."""
        last = len(self.index()) - 1
        for i in self._positions(kinds, start_step, end_step):
            try:
                frame = self.frame_at(i)
            except CorruptRecord:
                if i != last:
                    raise
                # A last record with a bad checksum is a torn write too (the header landed, the payload did not).
                self.torn = f"{self.path.name}: last record torn at byte {self.index().offsets[i]} (trainer killed mid-write?)"
                return
            if frame is not None:
                yield frame

    def payloads(self, from_seq: int = 0, to_seq: int | None = None) -> Iterator[bytes]:
        """Raw payloads of the records with from_seq <= seq <= to_seq, in order (for snapshots)."""
        idx = self.index()
        for i in range(idx.position_of_seq(from_seq), len(idx)):
            if to_seq is not None and idx.seqs[i] > to_seq:
                break
            yield self.payload_at(i)

    def dicts(self, kinds: Iterable[str] | None = None) -> Iterator[dict]:
        """Records as plain decoded maps (unknown kinds included), for tools that print raw frames."""
        for i in self._positions(kinds, None, None):
            data = msgpack.unpackb(self.payload_at(i), raw=False, strict_map_key=False)
            check_version(data.get("v"), where=str(self.path))
            yield data

    def run_start(self) -> RunStart | None:
        """The run's first RunStart frame, or None if the recording has none (yet)."""
        for frame in self.frames(kinds=["run_start"]):
            return frame  # type: ignore[return-value]
        return None

    def close(self) -> None:
        if self._mm is not None:
            self._mm.close()
            self._mm = None
        self._file.close()

    def __enter__(self) -> "RunReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
