"""The .lsr recording: append and read back, torn tails, the index, the sidecar cache, bad files."""

from __future__ import annotations

import os
import struct

import msgpack
import pytest
from protocol_samples import sample_frames, write_sample_run

from lorascope.protocol.codec import ProtocolVersionError, encode
from lorascope.protocol.errors import UserError
from lorascope.protocol.frames import PROTOCOL_MAJOR, RunStart, StepMetrics
from lorascope.protocol.recording import FILE_HEADER, FILE_MAGIC, RECORD_HEADER, RunReader, RunRecorder, pack_record
from lorascope.protocol.recording_index import sidecar_path
from lorascope.protocol.stream import FrameStream, NullSink


def test_every_kind_is_recorded_and_read_back_in_order(tmp_path):
    recorder = RunRecorder(tmp_path / "deep" / "run.lsr")  # parent dirs are made
    stream = FrameStream("run-1", [recorder, NullSink()])
    sent = [stream.emit(f) for f in sample_frames()]
    stream.close()
    with RunReader(recorder.path) as reader:
        back = list(reader)
        assert reader.torn is None
    assert [f.seq for f in back] == list(range(len(sent)))
    assert [f.kind for f in back] == [f.kind for f in sent]
    assert all(f.run_id == "run-1" and f.wall_time > 0 for f in back)
    assert back[0].model == "embedded:SmolLM2-135M-Instruct"


def test_stream_stamps_gapless_seqs_and_encodes_once(tmp_path):
    seen = []

    class ListSink:
        def write_frame(self, frame, payload):
            seen.append((frame.seq, payload))

        def close(self):
            pass

    stream = FrameStream("r", [ListSink(), ListSink()])
    for i in range(5):
        stream.emit(StepMetrics(step=i, wall_time=123.0))
    assert stream.last_seq == 4
    assert [s for s, _ in seen] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert seen[0][1] is seen[1][1]  # the same bytes object: encoded once for all sinks
    assert seen[0][1] == encode(StepMetrics(run_id="r", seq=0, step=0, wall_time=123.0))


def test_recorder_refuses_to_overwrite(tmp_path):
    path = write_sample_run(tmp_path / "run.lsr")
    with pytest.raises(UserError, match="refusing to overwrite"):
        RunRecorder(path)


def test_cut_at_every_byte_of_the_last_record_keeps_the_earlier_frames(tmp_path):
    path = write_sample_run(tmp_path / "run.lsr", steps=3)
    data = path.read_bytes()
    full = RunReader(path)
    idx = full.index()
    expected = [f.seq for f in full]
    full.close()
    last_start = idx.offsets[-1]
    assert last_start + RECORD_HEADER.size + idx.lengths[-1] == len(data)
    for cut in range(last_start, len(data)):
        torn = tmp_path / f"cut{cut}.lsr"
        torn.write_bytes(data[:cut])
        with RunReader(torn, use_sidecar=False) as reader:
            assert [f.seq for f in reader] == expected[:-1], cut
            if cut == last_start:
                assert reader.torn is None  # a clean cut between records is not a torn record
            else:
                assert reader.torn == f"{torn.name}: last record torn at byte {last_start} (trainer killed mid-write?)"
        torn.unlink()


def test_bad_checksum_on_the_last_record_counts_as_torn(tmp_path):
    path = write_sample_run(tmp_path / "run.lsr", steps=2)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with RunReader(path) as reader:
        frames = list(reader)
        assert frames[-1].kind != "run_end" and "torn at byte" in reader.torn


def test_unknown_kind_in_a_recording_is_skipped(tmp_path):
    path = tmp_path / "run.lsr"
    recorder = RunRecorder(path)
    recorder.write_frame(RunStart(run_id="r", seq=0), encode(RunStart(run_id="r", seq=0)))
    alien = StepMetrics(run_id="r", seq=1)
    alien_payload = msgpack.packb({"v": [PROTOCOL_MAJOR, 5], "kind": "hologram", "run_id": "r", "seq": 1, "step": 0, "wall_time": 0})
    object.__setattr__(alien, "kind", "hologram")
    recorder.write_frame(alien, alien_payload)
    recorder.write_frame(StepMetrics(run_id="r", seq=2, loss=1.0), encode(StepMetrics(run_id="r", seq=2, loss=1.0)))
    recorder.close()
    with RunReader(path) as reader:
        assert [f.kind for f in reader] == ["run_start", "step"]
        assert reader.index().counts() == {"run_start": 1, "hologram": 1, "step": 1}


def test_index_and_filtered_reads_decode_only_what_matches(tmp_path):
    path = write_sample_run(tmp_path / "run.lsr", steps=20)
    with RunReader(path) as reader:
        idx = reader.index()
        assert idx.counts()["step"] == 20 and idx.counts()["run_start"] == 1
        assert idx.step_range() == (0, 20)
        entry = idx[idx.position_of_step(7)]
        assert entry.step == 7 and entry.kind == "step"
        steps = [f.step for f in reader.frames(kinds=["step"], start_step=5, end_step=9)]
        assert steps == [5, 6, 7, 8, 9]
        assert [f.state for f in reader.frames(kinds=["edit"])] == ["requested", "active", "active", "active", "achieved"]
        payloads = list(reader.payloads(from_seq=len(idx) - 3))
        assert [msgpack.unpackb(p)["seq"] for p in payloads] == [len(idx) - 3, len(idx) - 2, len(idx) - 1]
        assert reader.run_start().model == "tiny-llama"


def test_reader_follows_a_growing_file(tmp_path):
    path = tmp_path / "live.lsr"
    recorder = RunRecorder(path)
    stream = FrameStream("r", [recorder])
    stream.emit(RunStart())
    reader = RunReader(path)
    assert len(reader.index()) == 1
    stream.emit(StepMetrics(step=1))
    record = pack_record(StepMetrics(run_id="r", seq=2, step=2), encode(StepMetrics(run_id="r", seq=2, step=2)))
    os.write(recorder._fd, record[:10])  # a write in progress
    assert len(reader.refresh()) == 2 and reader.torn is not None
    os.write(recorder._fd, record[10:])
    assert len(reader.refresh()) == 3 and reader.torn is None
    reader.close()
    recorder.close()


def test_sidecar_index_is_written_reused_and_invalidated(tmp_path, monkeypatch):
    import lorascope.protocol.recording as recording

    monkeypatch.setattr(recording, "SIDECAR_MIN_RECORDS", 10)
    path = write_sample_run(tmp_path / "run.lsr", steps=20)
    with RunReader(path) as reader:
        n = len(reader.index())
    side = sidecar_path(path)
    assert side.exists()
    with RunReader(path) as reader:
        cached = reader.index()
        assert len(cached) == n and cached.counts()["step"] == 20
    # Appending (a resumed writer) extends the cached index; a different file at the same path rebuilds it.
    with open(path, "ab") as f:
        f.write(pack_record(StepMetrics(seq=n, step=21), encode(StepMetrics(seq=n, step=21))))
    with RunReader(path) as reader:
        assert len(reader.index()) == n + 1
    path.unlink()
    write_sample_run(path, steps=3, run_id="other")
    with RunReader(path) as reader:
        assert reader.index().counts()["step"] == 3 and next(iter(reader)).run_id == "other"


def test_missing_and_foreign_files_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="no such recording"):
        RunReader(tmp_path / "nope.lsr")
    (tmp_path / "notes.txt").write_text("hello world, this is not a recording")
    with pytest.raises(UserError, match="notes.txt: not a lorascope recording"):
        RunReader(tmp_path / "notes.txt")
    with pytest.raises(UserError, match="is a directory"):
        RunReader(tmp_path)


def test_recording_from_a_newer_major_is_refused(tmp_path):
    path = tmp_path / "future.lsr"
    path.write_bytes(FILE_HEADER.pack(FILE_MAGIC, PROTOCOL_MAJOR + 1, 2))
    with pytest.raises(ProtocolVersionError) as err:
        RunReader(path)
    assert isinstance(err.value, UserError)
    assert "future.lsr" in str(err.value) and f"{PROTOCOL_MAJOR + 1}.2" in str(err.value) and f"{PROTOCOL_MAJOR}.x" in str(err.value)


def test_record_header_layout_is_what_the_spec_says():
    frame = StepMetrics(seq=5, step=9)
    record = pack_record(frame, b"abc")
    marker, length, crc, seq, step, kind = struct.unpack_from("<2s2xIIqq16s", record)
    assert (marker, length, seq, step, kind.rstrip(b"\0")) == (b"LR", 3, 5, 9, b"step")
    assert RECORD_HEADER.size == 44 and FILE_HEADER.size == 16


def test_a_writer_killed_with_sigkill_leaves_a_readable_recording(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    path = tmp_path / "killed.lsr"
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys\n"
            "from lorascope.protocol.frames import RunStart, StepMetrics\n"
            "from lorascope.protocol.recording import RunRecorder\n"
            "from lorascope.protocol.stream import FrameStream\n"
            "s = FrameStream('k', [RunRecorder(sys.argv[1])])\n"
            "s.emit(RunStart(model='m'))\n"
            "step = 0\n"
            "while True:\n"
            "    step += 1\n"
            "    s.emit(StepMetrics(step=step, loss=1.0))\n",
            str(path),
        ]
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (not path.exists() or path.stat().st_size < 200_000):
            time.sleep(0.02)
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    assert writer.returncode == -signal.SIGKILL
    with RunReader(path) as reader:
        frames = list(reader)
    assert frames[0].kind == "run_start" and len(frames) > 500
    assert [f.seq for f in frames] == list(range(len(frames)))  # every complete record, in order, none lost
