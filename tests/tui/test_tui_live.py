"""Live: the app joins a run mid-way over real ZeroMQ sockets and ends with its whole history.

The publishing side here is the real protocol stack (FrameStream → RunRecorder +
Publisher, ControlServer answering hello/snapshot from the recording) fed with
the synthetic run's frames; test_tui_trainer.py does the same with a real
trainer process.
"""

from __future__ import annotations

import asyncio

from synthetic_run import run_id_for, synthetic_frames

from lorascope.protocol.recording import RunRecorder
from lorascope.protocol.stream import FrameStream
from lorascope.protocol.transport import ControlServer, Publisher
from lorascope.tui.app import LorascopeApp

SIZE = (100, 30)


async def wait_until(pilot, condition, timeout: float = 20.0) -> bool:
    """Poll the app until `condition()`; never asserts on speed, only gives up after a generous timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if condition():
            return True
        await pilot.pause(0.05)
    if condition():
        return True
    state = pilot.app.state
    print(f"gave up after {timeout} s: step={state.step} state={state.state} connection={state.connection} "
          f"last_seq={state.last_seq} replies={[(r.cmd, r.ok, r.error) for r in pilot.app.replies]}")
    return False


async def test_joins_mid_run_and_controls(tmp_path):
    recorder = RunRecorder(tmp_path / "run.lsr")
    publisher = Publisher("tcp://127.0.0.1:0")
    stream = FrameStream(run_id_for(0), sinks=[recorder, publisher])
    server = ControlServer("tcp://127.0.0.1:0", recording=recorder.path, run_id=run_id_for(0),
                           pub_endpoint=publisher.endpoint)
    frames = list(synthetic_frames(60))
    half = len(frames) // 2
    try:
        for frame in frames[:half]:  # history the app never saw live: it must come from the snapshot
            stream.emit(frame)
        app = LorascopeApp.live(publisher.endpoint, server.endpoint)
        async with app.run_test(size=SIZE) as pilot:
            assert await wait_until(pilot, lambda: app.state.last_seq == stream.last_seq)
            # the feed's state travels in its own message, one poll behind the frames
            assert await wait_until(pilot, lambda: app.state.connection == "live")
            for frame in frames[half:]:
                stream.emit(frame)
                if frame.seq % 50 == 0:
                    await pilot.pause(0)  # let the feed breathe as a trainer between steps would
            assert await wait_until(pilot, lambda: app.state.last_seq == stream.last_seq)
            state = app.state
            assert app.frames_applied == len(frames)  # every frame once: no gaps, no duplicates
            assert state.step == 60 and state.state == "finished"
            assert len(state.history) == 60 and state.deltas.step == 60
            assert state.edits["e1"].state == "achieved" and state.edits["e2"].state == "failed"
            await pilot.pause(0.3)
            assert app.screen.state is state  # the redraw timer has drawn it

            # Control keys reach the trainer's ControlServer, and its reply comes back as a notification.
            await pilot.press("p")
            assert app.sent_requests[-1][1:] == ("pause", {})
            requests = []
            for _ in range(200):
                requests += server.poll()
                if requests:
                    break
                await pilot.pause(0.05)
            assert [r.cmd for r in requests] == ["pause"]
            requests[0].reply({"state": "paused"})
            assert await wait_until(pilot, lambda: app.replies and app.replies[-1].cmd == "pause")
            assert app.replies[-1].ok

            await pilot.press("3", "c")
            requests = []
            for _ in range(200):
                requests += server.poll()
                if requests:
                    break
                await pilot.pause(0.05)
            assert requests[0].cmd == "continue" and requests[0].args["probe_id"] == "capital_fr"
            requests[0].fail("probe continuation needs a paused trainer")
            assert await wait_until(pilot, lambda: len(app.replies) == 2)
            assert not app.replies[-1].ok and "paused" in app.replies[-1].error
    finally:
        server.close()
        publisher.close()
        recorder.close()


async def test_bad_endpoint_is_reported_not_fatal():
    app = LorascopeApp.live("tcp://127.0.0.1:1", "tcp://127.0.0.1:2")  # nothing listens there
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.3)
        assert app.state.connection in ("connecting", "disconnected")
        assert app.is_running


async def test_shows_when_the_trainer_goes_away(tmp_path):
    recorder = RunRecorder(tmp_path / "run.lsr")
    publisher = Publisher("tcp://127.0.0.1:0")
    stream = FrameStream(run_id_for(0), sinks=[recorder, publisher])
    server = ControlServer("tcp://127.0.0.1:0", recording=recorder.path, run_id=run_id_for(0),
                           pub_endpoint=publisher.endpoint)
    try:
        for frame in synthetic_frames(5):
            stream.emit(frame)
        app = LorascopeApp.live(publisher.endpoint, server.endpoint)
        async with app.run_test(size=SIZE) as pilot:
            assert await wait_until(pilot, lambda: app.state.connection == "live" and app.state.step == 5)
            server.close()
            publisher.close()  # the trainer vanished without a word: no more frames nor heartbeats
            assert await wait_until(pilot, lambda: app.state.connection in ("stale", "disconnected"), 30)
            await pilot.pause(0.2)
            header = str(app.screen.query_one("#header").render())
            assert app.state.connection in header
            assert app.state.step == 5  # what was seen stays on screen

            # The trainer comes back on the same endpoints as a new run: the UI reconnects by itself.
            recorder.close()
            recorder = RunRecorder(tmp_path / "run2.lsr")
            publisher = Publisher(publisher.endpoint)
            stream = FrameStream("restarted", sinks=[recorder, publisher])
            server = ControlServer(server.endpoint, recording=recorder.path, run_id="restarted",
                                   pub_endpoint=publisher.endpoint)
            for frame in synthetic_frames(8):
                stream.emit(frame)
            assert await wait_until(pilot, lambda: app.state.run_id == "restarted"
                                    and app.state.last_seq == stream.last_seq, 60)
            assert await wait_until(pilot, lambda: app.state.connection == "live")
            assert app.state.step == 8 and len(app.state.history) == 8
    finally:
        server.close()
        publisher.close()
        recorder.close()
