"""Benchmark: how fast frames reach a LiveFeed, live and as history (not collected by pytest).

    .venv/bin/python tests/bench/bench_transport.py [--frames 50000]

A trainer-side process (recorder + publisher + control server, as `lorascope
train` wires them) emits step and volatility frames as fast as it can; this
process follows them with a LiveFeed. Reported: the emit rate the trainer
sustains, the rate at which the feed delivers them in order, the frames the PUB
socket dropped and the feed filled from the recording, and the catch-up rate of a
late joiner reading the same run as history. Both processes share the machine,
so the figures are for comparison, not absolutes.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time

from lorascope.protocol.transport import ControlReply, LiveFeed

TRAINER = r"""
import sys, time
from lorascope.protocol.frames import F32Array, RunEnd, RunStart, StepMetrics, Volatility
from lorascope.protocol.recording import RunRecorder
from lorascope.protocol.stream import FrameStream
from lorascope.protocol.transport import ControlServer, Publisher

n, path = int(sys.argv[1]), sys.argv[2]
pub = Publisher("tcp://127.0.0.1:0")
rec = RunRecorder(path)
ctl = ControlServer("tcp://127.0.0.1:0", recording=path, run_id="bench", pub_endpoint=pub.endpoint)
stream = FrameStream("bench", [rec, pub])
stream.emit(RunStart(model="bench", total_steps=n))
print(pub.endpoint, ctl.endpoint, flush=True)
sys.stdin.readline()  # go
losses = F32Array.from_values([0.5, 1.0, 1.5, 2.0])
t0 = time.perf_counter()
for step in range(1, n // 2 + 1):
    stream.emit(StepMetrics(step=step, loss=1.0, tokens=512))
    stream.emit(Volatility(step=step, example_ids=[1, 2, 3, 4], losses=losses, grad_norms=losses, token_counts=[128] * 4))
stream.emit(RunEnd(step=n // 2))
print(f"{time.perf_counter() - t0:.6f}", flush=True)
sys.stdin.readline()  # done
print(pub.dropped, flush=True)
ctl.close()
stream.close()
"""


def follow(feed: LiveFeed, until_seq: int, timeout: float = 300) -> tuple[float, int, bool]:
    """Seconds until the feed handed out seq `until_seq`, frames handed out, and whether all came in order."""
    t0 = time.perf_counter()
    n, expected, in_order, seen = 0, feed.last_seq + 1, True, -1
    while seen < until_seq and time.perf_counter() - t0 < timeout:
        for item in feed.poll(50):
            if isinstance(item, ControlReply):
                continue
            in_order &= item.seq == expected
            expected = seen = item.seq
            expected += 1
            n += 1
    return time.perf_counter() - t0, n, in_order


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=50_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lorascope-bench-") as folder:
        trainer = subprocess.Popen(
            [sys.executable, "-c", TRAINER, str(args.frames), f"{folder}/run.lsr"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        pub, control = trainer.stdout.readline().split()
        last = args.frames + 1  # run start, the frames, run end
        feed = LiveFeed(pub, control)
        while feed.state != "live":
            feed.poll(50)
        trainer.stdin.write("go\n")
        trainer.stdin.flush()
        live_s, live_n, live_ok = follow(feed, last)
        emit_s = float(trainer.stdout.readline())
        print(f"trainer emitted {args.frames + 1} frames (recorded + published) in {emit_s:.2f} s: {(args.frames + 1) / emit_s:,.0f} frames/s")
        print(f"live feed delivered {live_n} frames in {live_s:.2f} s: {live_n / live_s:,.0f} frames/s, in order: {live_ok}")
        print(f"gaps the feed filled from the recording: {feed.gaps_filled}, skipped: {feed.gaps_skipped}")
        feed.close()

        late = LiveFeed(pub, control)  # a late joiner: the whole run comes as history
        hist_s, hist_n, hist_ok = follow(late, last)
        print(f"late joiner caught up on {hist_n} frames in {hist_s:.2f} s: {hist_n / hist_s:,.0f} frames/s, in order: {hist_ok}")
        print(f"ratio live delivery / trainer emit rate: {(live_n / live_s) / ((args.frames + 1) / emit_s):.2f}")
        late.close()
        trainer.stdin.write("done\n")
        trainer.stdin.flush()
        print(f"publisher queue drops: {trainer.stdout.readline().strip()}")
        trainer.stdin.close()
        trainer.wait(timeout=30)


if __name__ == "__main__":
    main()
