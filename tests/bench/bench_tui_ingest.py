"""Benchmark the UI's ingest and replay (not collected by pytest; run it by hand).

    .venv/bin/python tests/bench/bench_tui_ingest.py [--steps 100000]

1. Ingest: frames pushed through the app's real message path (inbox →
   FramesArrived → RunState.apply) in a headless app, with the redraw timer
   running; reports frames/s absorbed and how far behind the app was at the end.
2. Replay: writes a synthetic recording of N steps (about 2.2 frames per step),
   then measures opening it (index + first state + first draw), scrubbing, and
   memory (tracemalloc peak of the model and RSS) after stepping through it.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tui"))

from synthetic_run import synthetic_frames, write_synthetic_run  # noqa: E402

from lorascope.protocol.stream import FrameStream, NullSink  # noqa: E402
from lorascope.tui.app import LorascopeApp  # noqa: E402
from lorascope.tui.messages import FramesArrived  # noqa: E402


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def bench_ingest(steps: int) -> None:
    stream = FrameStream("bench", sinks=[NullSink()])
    frames = [stream.emit(f) for f in synthetic_frames(steps, deltas_every=5, shifts_every=5)]
    app = LorascopeApp("live-bench")  # no feed: frames are injected into the inbox as the worker would
    async with app.run_test(size=(120, 36)) as pilot:
        from lorascope.tui.screens.dashboard import DashboardScreen

        await app.push_screen(DashboardScreen(live=True))
        await pilot.pause()
        batch = 500  # a LiveFeed.poll returns what is waiting; 500 frames per poll under load
        start = time.perf_counter()
        for i in range(0, len(frames), batch):
            app._inbox.extend(frames[i:i + batch])
            if not app._wake_pending.is_set():
                app._wake_pending.set()
                app.post_message(FramesArrived())
            await asyncio.sleep(0)  # the worker thread yields the GIL between polls
        while app.frames_applied < len(frames):
            await asyncio.sleep(0.001)
        elapsed = time.perf_counter() - start
        await pilot.pause(0.3)
        print(f"ingest: {len(frames)} frames ({steps} steps) absorbed in {elapsed:.2f} s = "
              f"{len(frames) / elapsed:,.0f} frames/s, with the dashboard redrawing at <= 10 Hz")
        print(f"ingest: history kept {len(app.state.history)} loss points for {steps} steps "
              f"(stride {app.state.history.stride}), {len(app.state.spikes)} spikes (cap)")


async def bench_replay(steps: int) -> None:
    from lorascope.tui.replay_model import ReplayModel

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "long.lsr"
        t = time.perf_counter()
        write_synthetic_run(path, steps, deltas_every=10, shifts_every=10)
        size = path.stat().st_size
        print(f"replay: wrote {steps} steps, {size / 1e6:.1f} MB in {time.perf_counter() - t:.1f} s")
        for label in ("cold (no sidecar index)", "warm (sidecar index)"):
            t = time.perf_counter()
            model = ReplayModel(path)
            t_index = time.perf_counter() - t
            model.state_at(steps // 2)
            t_state = time.perf_counter() - t
            model.close()
            t = time.perf_counter()
            app = LorascopeApp.replay(path, start_step=steps // 2)
            async with app.run_test(size=(120, 36)) as pilot:
                await pilot.pause()
                t_open = time.perf_counter() - t
                t0 = time.perf_counter()
                for _ in range(20):
                    await pilot.press("greater_than_sign")
                    await pilot.pause()
                t_scrub = (time.perf_counter() - t0) / 20
                await pilot.press("end")
                await pilot.pause()
            print(f"replay {label}: {model.record_count} records; model (index + per-kind split) {t_index:.2f} s, "
                  f"+ state at the middle {t_state:.2f} s; app open to first draw {t_open:.2f} s; "
                  f"scrub 10 steps {t_scrub * 1000:.0f} ms/key (state + redraw)")
        # Memory, measured apart (tracemalloc slows Python several-fold): the model after stepping through the run.
        tracemalloc.start()
        model = ReplayModel(path)
        for step in range(0, steps + 1, max(1, steps // 50)):
            model.state_at(step)
        current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        model.close()
        print(f"replay memory: after states at 51 cursor steps across the run, traced current {current / 1e6:.1f} MB, "
              f"peak {peak / 1e6:.1f} MB (recording is {size / 1e6:.0f} MB, mmapped, not read into memory)")
        # The whole UI process on its own: open the replay, play through the run in 50 jumps, report max RSS.
        import subprocess

        child = subprocess.run([sys.executable, "-c", REPLAY_CHILD, str(path), str(steps)],
                               capture_output=True, text=True, check=True)
        print(child.stdout.strip())


REPLAY_CHILD = """
import asyncio, sys
from lorascope.tui.app import LorascopeApp
def status_mb(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
def hwm_mb():  # VmHWM starts afresh at exec (ru_maxrss can carry the parent's peak over a fork)
    return status_mb("VmHWM")
path, steps = sys.argv[1], int(sys.argv[2])
base = hwm_mb()
async def main():
    app = LorascopeApp.replay(path, start_step=0)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        for k in range(1, 51):
            app.screen.timeline.move_to(k * steps // 50)
            await pilot.pause()
asyncio.run(main())
rss = hwm_mb()
print(f"replay process: max RSS {rss:.0f} MB after replaying all {steps} steps in 50 jumps at 160x48 "
      f"(interpreter + Textual + lorascope imports alone: {base:.0f} MB before the app started); at the end "
      f"anonymous (heap) {status_mb('RssAnon'):.0f} MB, file-backed {status_mb('RssFile'):.0f} MB "
      f"(pages of the mmapped recording that were read: reclaimable page cache, not heap)")
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--ingest-steps", type=int, default=20_000)
    args = parser.parse_args()
    asyncio.run(bench_ingest(args.ingest_steps))
    asyncio.run(bench_replay(args.steps))


if __name__ == "__main__":
    main()
