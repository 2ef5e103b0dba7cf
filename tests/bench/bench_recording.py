"""Benchmark: indexing a 100k-step recording vs decoding it (not collected by pytest: bench_*.py).

    .venv/bin/python tests/bench/bench_recording.py [--steps 100000] [--keep DIR]

Writes a synthetic run through the real FrameStream + RunRecorder (3.2 frames
per step, as the trainer makes them: step metrics, volatility and resources every
step, weight deltas (30 layers x 7 modules) and logit shifts every 10 steps), then times, on this machine:
the header scan (no msgpack), the same with the sidecar cache, finding one step,
decoding only the step frames, and decoding everything. Prints ratios, which
mean more than the seconds on a shared machine.
"""

from __future__ import annotations

import argparse
import pathlib
import random
import tempfile
import time

from lorascope.protocol.frames import (
    F32Array,
    LogitShifts,
    PositionShift,
    ProbeShift,
    Resources,
    RunStart,
    StepMetrics,
    TokenProb,
    Volatility,
    WeightDeltas,
)
from lorascope.protocol.recording import RunReader, RunRecorder
from lorascope.protocol.recording_index import sidecar_path
from lorascope.protocol.stream import FrameStream

LAYERS, MODULES, BATCH = 30, 7, 4


def write_run(path: pathlib.Path, steps: int) -> float:
    rng = random.Random(0)
    grid = F32Array.from_values([[rng.random() for _ in range(MODULES)] for _ in range(LAYERS)])
    shifts = [ProbeShift("p0", [PositionShift(i, 0.1, 2.0, 2.1, [TokenProb(7, " the", 0.2, 0.3, b" the")] * 5) for i in range(6)])]
    recorder = RunRecorder(path)
    stream = FrameStream("bench", [recorder])
    t0 = time.perf_counter()
    stream.emit(RunStart(model="bench", layers=[str(i) for i in range(LAYERS)], total_steps=steps))
    for step in range(1, steps + 1):
        stream.emit(StepMetrics(step=step, loss=3.0 / step, lr=1e-4, grad_norm=1.0, tokens=512))
        stream.emit(
            Volatility(
                step=step,
                example_ids=list(range(step * BATCH, step * BATCH + BATCH)),
                losses=F32Array.from_values([rng.random() for _ in range(BATCH)]),
                grad_norms=F32Array.from_values([rng.random() for _ in range(BATCH)]),
                token_counts=[128] * BATCH,
                dispersion=rng.random(),
            )
        )
        stream.emit(Resources(step=step, peak_bytes=1 << 30, current_bytes=1 << 29))
        if step % 10 == 0:  # the observers' default cadences are every few steps
            stream.emit(WeightDeltas(step=step, absolute=grid, relative=grid, since_last=grid, since_step=step - 10))
            stream.emit(LogitShifts(step=step, probes=shifts))
    stream.close()
    return time.perf_counter() - t0


def timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--keep", help="write the recording into this directory and keep it")
    args = parser.parse_args()
    folder = pathlib.Path(args.keep) if args.keep else pathlib.Path(tempfile.mkdtemp(prefix="lorascope-bench-"))
    path = folder / f"bench-{args.steps}.lsr"
    if path.exists():
        path.unlink()
    sidecar_path(path).unlink(missing_ok=True)

    write_s = write_run(path, args.steps)
    size = path.stat().st_size
    with RunReader(path, use_sidecar=False) as reader:
        index_s, idx = timed(reader.index)
    records = len(idx)
    with RunReader(path) as reader:
        reader.index()  # writes the sidecar
    with RunReader(path) as reader:
        cached_s, _ = timed(reader.index)
        seek_s, frames = timed(lambda: list(reader.frames(start_step=args.steps // 2, end_step=args.steps // 2)))
        steps_s, _ = timed(lambda: sum(1 for _ in reader.frames(kinds=["step"])))
        full_s, n = timed(lambda: sum(1 for _ in reader))

    print(f"recording: {args.steps} steps, {records} records, {size / 1e6:.1f} MB, written in {write_s:.1f} s ({records / write_s:,.0f} frames/s)")
    print(f"index (header scan, no msgpack): {index_s:.3f} s   ({records / index_s:,.0f} records/s)")
    print(f"index from sidecar cache:        {cached_s:.3f} s")
    print(f"frames of one step ({len(frames)}):        {seek_s * 1000:.2f} ms")
    print(f"decode step frames only:         {steps_s:.3f} s")
    print(f"decode everything ({n} frames): {full_s:.3f} s")
    print(f"ratio full decode / index scan:  {full_s / index_s:.1f}x")
    print(f"ratio full decode / cached index: {full_s / max(cached_s, 1e-9):.0f}x")
    if not args.keep:
        path.unlink()
        sidecar_path(path).unlink(missing_ok=True)
        folder.rmdir()


if __name__ == "__main__":
    main()
