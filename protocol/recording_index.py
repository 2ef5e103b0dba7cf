"""The index of a recording: where each record is, with its seq, step and kind, without decoding it.

Built by hopping from record header to record header (struct only, no msgpack),
kept in compact `array`s (a 100k-step run has ~500k records), and cached in a
sidecar `<file>.lsr.idx` that is trusted only while the recording's first bytes
match and it has not shrunk (recordings are append-only).
"""

from __future__ import annotations

import bisect
import os
import pathlib
import struct
import zlib
from array import array
from collections.abc import Iterable, Iterator
from typing import NamedTuple

SIDECAR_MAGIC = b"LSRIDX01"
# magic, indexed end offset, record count, crc32 of the recording's first 4 KiB, kind names length
_SIDECAR_HEADER = struct.Struct("<8sqqII")
_PREFIX_BYTES = 4096


class IndexEntry(NamedTuple):
    offset: int  # byte offset of the record header in the file
    length: int  # payload length in bytes
    seq: int
    step: int
    kind: str


class RecordingIndex:
    """Parallel arrays, one cell per complete record, in file order."""

    def __init__(self) -> None:
        self.offsets = array("q")
        self.lengths = array("I")
        self.seqs = array("q")
        self.steps = array("q")
        self.kind_codes = array("B")
        self.kind_names: list[str] = []
        self._kind_code: dict[bytes, int] = {}
        self.end = 0  # byte offset just after the last complete record
        self.steps_sorted = True  # steps never decrease (true for runs made by one trainer)

    def __len__(self) -> int:
        return len(self.offsets)

    def __getitem__(self, i: int) -> IndexEntry:
        return IndexEntry(self.offsets[i], self.lengths[i], self.seqs[i], self.steps[i], self.kind_names[self.kind_codes[i]])

    def __iter__(self) -> Iterator[IndexEntry]:
        return (self[i] for i in range(len(self)))

    def kind(self, i: int) -> str:
        return self.kind_names[self.kind_codes[i]]

    # ----------------------------------------------------------------- building
    def scan(self, buf, start: int, end: int, header: struct.Struct, marker: bytes) -> int:
        """Append the complete records found in buf[start:end]; returns the new `end`."""
        unpack = header.unpack_from
        size = header.size
        offsets, lengths, seqs, steps, codes = self.offsets, self.lengths, self.seqs, self.steps, self.kind_codes
        kind_code = self._kind_code
        last_step = steps[-1] if steps else None
        sorted_so_far = self.steps_sorted
        off = start
        while off + size <= end:
            mark, length, _crc, seq, step, kind = unpack(buf, off)
            if mark != marker or off + size + length > end:
                break  # torn (or still being written) from here on
            code = kind_code.get(kind)
            if code is None:
                code = kind_code[kind] = len(self.kind_names)
                self.kind_names.append(kind.rstrip(b"\0").decode("ascii", "replace"))
            offsets.append(off)
            lengths.append(length)
            seqs.append(seq)
            steps.append(step)
            codes.append(code)
            if last_step is not None and step < last_step:
                sorted_so_far = False
            last_step = step
            off += size + length
        self.steps_sorted = sorted_so_far
        self.end = off
        return off

    # ----------------------------------------------------------------- queries
    def counts(self) -> dict[str, int]:
        """Frames by kind."""
        out = [0] * len(self.kind_names)
        for c in self.kind_codes:
            out[c] += 1
        return {name: n for name, n in zip(self.kind_names, out) if n}

    def position_of_seq(self, seq: int) -> int:
        """Index of the first record with seq >= `seq` (len(self) if none)."""
        return bisect.bisect_left(self.seqs, seq)

    def position_of_step(self, step: int) -> int:
        """Index of the first record with step >= `step` (len(self) if none)."""
        if self.steps_sorted:
            return bisect.bisect_left(self.steps, step)
        return next((i for i, s in enumerate(self.steps) if s >= step), len(self))

    def positions(
        self,
        kinds: Iterable[str] | None = None,
        start_step: int | None = None,
        end_step: int | None = None,
    ) -> Iterator[int]:
        """Record indices matching the kinds and steps in [start_step, end_step], in file order."""
        wanted = None
        if kinds is not None:
            names = set(kinds)
            wanted = {code for code, name in enumerate(self.kind_names) if name in names}
            if not wanted:
                return
        begin = self.position_of_step(start_step) if start_step is not None else 0
        steps, codes = self.steps, self.kind_codes
        for i in range(begin, len(self)):
            if end_step is not None and steps[i] > end_step:
                if self.steps_sorted:
                    return
                continue
            if start_step is not None and not self.steps_sorted and steps[i] < start_step:
                continue
            if wanted is None or codes[i] in wanted:
                yield i

    def step_range(self) -> tuple[int, int] | None:
        """(first step, last step) of the recording, or None when empty."""
        if not len(self):
            return None
        if self.steps_sorted:
            return self.steps[0], self.steps[-1]
        return min(self.steps), max(self.steps)


# --------------------------------------------------------------------------- sidecar cache
def sidecar_path(path: pathlib.Path) -> pathlib.Path:
    return path.with_name(path.name + ".idx")


def _prefix_crc(path: pathlib.Path) -> int:
    with open(path, "rb") as f:
        return zlib.crc32(f.read(_PREFIX_BYTES))


def load_sidecar(path: pathlib.Path) -> RecordingIndex | None:
    """The cached index, if it still describes a prefix of this recording; else None."""
    side = sidecar_path(path)
    try:
        data = side.read_bytes()
        magic, end, count, prefix_crc, names_len = _SIDECAR_HEADER.unpack_from(data, 0)
        if magic != SIDECAR_MAGIC or end > os.path.getsize(path) or prefix_crc != _prefix_crc(path):
            return None
        pos = _SIDECAR_HEADER.size
        names = data[pos : pos + names_len].decode("ascii").split("\n") if names_len else []
        pos += names_len
        idx = RecordingIndex()
        for name, width in (("offsets", 8), ("lengths", 4), ("seqs", 8), ("steps", 8), ("kind_codes", 1)):
            arr = getattr(idx, name)
            arr.frombytes(data[pos : pos + width * count])
            pos += width * count
            if len(arr) != count:
                return None
        if _byteorder_swapped():
            for name in ("offsets", "lengths", "seqs", "steps"):
                getattr(idx, name).byteswap()
        idx.kind_names = names
        idx._kind_code = {n.encode("ascii").ljust(16, b"\0"): i for i, n in enumerate(names)}
        idx.end = end
        idx.steps_sorted = _sorted(idx.steps)
        return idx
    except (OSError, struct.error, UnicodeDecodeError, ValueError):
        return None


def _sorted(a: array) -> bool:
    return all(x <= y for x, y in zip(a, a[1:]))


def _byteorder_swapped() -> bool:
    import sys

    return sys.byteorder == "big"


def save_sidecar(path: pathlib.Path, idx: RecordingIndex) -> None:
    """Cache the index beside the recording (atomically; silently skipped where we cannot write)."""
    side = sidecar_path(path)
    tmp = side.with_name(side.name + f".{os.getpid()}.tmp")
    try:
        names = "\n".join(idx.kind_names).encode("ascii")
        arrays = [idx.offsets, idx.lengths, idx.seqs, idx.steps, idx.kind_codes]
        if _byteorder_swapped():
            arrays = [array(a.typecode, a) for a in arrays]
            for a in arrays[:4]:
                a.byteswap()
        with open(tmp, "wb") as f:
            f.write(_SIDECAR_HEADER.pack(SIDECAR_MAGIC, idx.end, len(idx), _prefix_crc(path), len(names)))
            f.write(names)
            for a in arrays:
                f.write(a.tobytes())
        os.replace(tmp, side)
    except OSError:
        try:
            tmp.unlink()
        except OSError:
            pass
