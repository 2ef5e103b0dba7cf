"""Pilot tests: press the keys a person would and check the state they change (not pixels)."""

from __future__ import annotations

from lorascope.tui.app import LorascopeApp
from lorascope.tui.widgets.heatmap import Heatmap
from lorascope.tui.widgets.probe_view import ProbeView
from lorascope.tui.widgets.timeline import Timeline

SIZE = (120, 36)


async def test_panels_focus_zoom_and_cycle(synthetic_run):
    app = LorascopeApp.replay(synthetic_run, start_step=30)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        screen = app.screen
        assert screen.panel_of_focus().id == "panel-probes"  # the probe view starts focused
        for key, panel in [("1", "panel-loss"), ("2", "panel-heatmap"), ("4", "panel-volatility"), ("3", "panel-probes")]:
            await pilot.press(key)
            assert screen.panel_of_focus().id == panel
        await pilot.press("2", "z")
        assert screen.zoomed_panel == "panel-heatmap"
        assert not screen.query_one("#panel-loss").display or screen.query_one("#panel-loss").region.height == 0
        await pilot.press("4")  # a panel key while zoomed moves the zoom
        assert screen.zoomed_panel == "panel-volatility"
        await pilot.press("z")
        assert screen.zoomed_panel is None
        await pilot.press("tab")
        assert screen.panel_of_focus() is not None and screen.panel_of_focus().id != "panel-volatility"


async def test_heatmap_mode_toggle(synthetic_run):
    app = LorascopeApp.replay(synthetic_run, start_step=30)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        heatmap = app.screen.query_one(Heatmap)
        assert heatmap.mode == "absolute"
        absolute = heatmap.grid
        await pilot.press("2", "m")
        assert heatmap.mode == "relative" and heatmap.grid != absolute
        await pilot.press("m")
        assert heatmap.mode == "since_last"
        await pilot.press("m")
        assert heatmap.mode == "absolute" and heatmap.grid == absolute
        assert len(heatmap.grid) == 30 and len(heatmap.grid[0]) == 7


async def test_timeline_keys(synthetic_run):
    app = LorascopeApp.replay(synthetic_run, start_step=30)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        timeline = app.screen.query_one(Timeline)
        assert timeline.cursor == 30 and app.state.step == 30
        await pilot.press("comma")
        assert timeline.cursor == 29
        await pilot.press("greater_than_sign")
        assert timeline.cursor == 39
        await pilot.pause()
        assert app.state.step == 39 and app.state.deltas.step == 35 and app.state.shifts.step == 35
        await pilot.press("end")
        assert timeline.cursor == 60
        await pilot.press("full_stop")
        assert timeline.cursor == 60  # clamped at the end
        await pilot.press("home")
        assert timeline.cursor == 0
        await pilot.press("g", "1", "2", "enter")
        assert timeline.cursor == 12
        await pilot.press("g", "9", "9", "9", "enter")  # outside the recording: refused, cursor stays
        assert timeline.cursor == 12
        await pilot.press("plus", "plus")
        assert timeline.speed == 25
        await pilot.press("space")
        assert timeline.playing
        await pilot.wait_for_scheduled_animations()
        for _ in range(200):  # playback advances on a timer: wait for it, never assert on how fast
            await pilot.pause(0.05)
            if timeline.cursor > 12:
                break
        assert timeline.cursor > 12
        await pilot.press("space")
        assert not timeline.playing


async def test_every_panel_follows_the_cursor(synthetic_run):
    """State at a step equals what a live UI had after folding every frame up to that step."""
    from lorascope.protocol.recording import RunReader
    from lorascope.tui.replay_model import ReplayModel
    from lorascope.tui.run_state import RunState

    model = ReplayModel(synthetic_run)
    for step in (0, 5, 24, 30, 37, 60):
        folded = RunState()
        for frame in RunReader(synthetic_run):
            if frame.step <= step:
                folded.apply(frame)
        at = model.state_at(step)
        assert at.step == step and at.state == folded.state
        assert (at.deltas and at.deltas.step) == (folded.deltas and folded.deltas.step)
        assert (at.shifts and at.shifts.step) == (folded.shifts and folded.shifts.step)
        assert {k: (e.state, e.step) for k, e in at.edits.items()} == {k: (e.state, e.step) for k, e in folded.edits.items()}
        assert [(s.step, s.example_id) for s in at.spikes] == [(s.step, s.example_id) for s in folded.spikes]
        model.scan_spikes()  # the background index of all spikes gives the same table
        indexed = model.state_at(step)
        assert [(s.step, s.example_id, s.snippet) for s in indexed.spikes] == \
            [(s.step, s.example_id, s.snippet) for s in folded.spikes]
        model.spike_index = None
        assert at.history.points("loss") == folded.history.points("loss")
        assert at.continuations.keys() == folded.continuations.keys()


async def test_probe_selection_keys(synthetic_run):
    app = LorascopeApp.replay(synthetic_run, start_step=60)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        probes = app.screen.query_one(ProbeView)
        assert probes.probe_id == "capital_fr" and probes.selected_position() == 4
        await pilot.press("left", "left")
        assert probes.selected_position() == 2
        await pilot.press("down")
        assert probes.probe_id == "capital_ru" and probes.selected_position() == 4  # a new probe starts at its last position
        await pilot.press("down", "down")
        assert probes.probe_id == "capital_fr"
        await pilot.press("up")
        assert probes.probe_id == "arith"
        text = str(probes.render())
        assert "\ufffd" not in text


def test_partial_utf8_token_is_shown_as_bytes(synthetic_run):
    """The half-Cyrillic token renders as \\xd0 (from its bytes), never as U+FFFD."""
    from lorascope.tui.replay_model import ReplayModel
    from lorascope.tui.widgets.token_bars import render_token_bars

    state = ReplayModel(synthetic_run).state_at(40)
    position = state.probe_shift("capital_ru").positions[-1]
    text = render_token_bars(position, set(), 60).plain
    assert "' \\xd0'" in text and "\ufffd" not in text


async def test_control_keys_do_nothing_in_replay(synthetic_run):
    app = LorascopeApp.replay(synthetic_run, start_step=30)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("p", "r", "n", "s")
        assert app.sent_requests == []  # hidden and disabled: a replay has no trainer
        await pilot.press("3", "c")  # a continuation needs a trainer: the key is off in a replay
        assert app.sent_requests == []
        assert app.send_control("pause") is None  # and the app says so if asked directly
        assert app.sent_requests == [(None, "pause", {})]


async def test_volatility_table_selection_shows_text(synthetic_run):
    app = LorascopeApp.replay(synthetic_run, start_step=60)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("4")
        view = app.screen.query_one("#volatility")
        first = view.selected_spike
        assert first.step == 59
        await pilot.press("down")
        second = view.selected_spike
        assert second.step == 52
        detail = str(app.screen.query_one("#vol-detail").render())
        assert second.snippet[:20] in detail


async def test_help_lists_every_binding(synthetic_run):
    app = LorascopeApp.replay(synthetic_run, start_step=30)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("question_mark")
        from lorascope.tui.screens.help import HelpScreen

        assert isinstance(app.screen, HelpScreen)
        described = {d for _, rows in app.screen.sections for _, d in rows}
        for needed in ("Zoom", "Heat mode", "Cont.", "Edit", "Jump", "Play", "Back", "Fwd", "Quit"):
            assert needed in described
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_compare_syncs_probe_and_steps(synthetic_run, synthetic_run_b):
    app = LorascopeApp.compare(synthetic_run, synthetic_run_b)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        screen = app.screen
        assert screen.query_one(Timeline).cursor == 50  # the last common step
        a, b = screen.query_one("#probes-a", ProbeView), screen.query_one("#probes-b", ProbeView)
        await pilot.press("down", "left")
        assert a.probe_id == b.probe_id == "capital_ru" and a.position == b.position
        heatmap = screen.query_one(Heatmap)
        nonzero = [v for row in heatmap.grid for v in row if v == v and v != 0]
        assert heatmap.diverging and nonzero  # B − A differs somewhere
        await pilot.press("comma")
        assert screen.state_a.step == screen.state_b.step == 49


async def test_tiny_terminal_and_odd_recordings(synthetic_run, tmp_path):
    """A 40×12 terminal, an empty recording and a torn one all open without an error."""
    from lorascope.protocol.recording import RunRecorder

    empty = tmp_path / "empty.lsr"
    RunRecorder(empty).close()
    torn = tmp_path / "torn.lsr"
    data = synthetic_run.read_bytes()
    torn.write_bytes(data[: len(data) - 7])  # the trainer was killed mid-write
    for path, size in [(synthetic_run, (40, 12)), (empty, (80, 24)), (torn, (80, 24))]:
        app = LorascopeApp.replay(path)
        async with app.run_test(size=size) as pilot:
            await pilot.pause()
            await pilot.press("2", "m", "z", "3", "down", "right", "comma", "question_mark", "escape")
            await pilot.pause()
            assert app.is_running
            if path == torn:
                assert app.screen.model.last_step == 60 and app.state.step == 59  # all before the torn record (then one step back)
                assert any("torn" in str(n.message) for n in app._notifications)


async def test_corrupt_record_is_reported_not_fatal(synthetic_run, tmp_path):
    """A flipped byte inside a record: the replay says which record is corrupt and keeps running."""
    from lorascope.protocol.recording import RunReader

    corrupt = tmp_path / "corrupt.lsr"
    data = bytearray(synthetic_run.read_bytes())
    reader = RunReader(synthetic_run)
    index = reader.index()
    last_step_record = max(i for i in range(len(index)) if index.kind(i) == "step")
    data[index.offsets[last_step_record] + 50] ^= 0xFF  # inside the payload of the last step frame
    reader.close()
    corrupt.write_bytes(bytes(data))
    app = LorascopeApp.replay(corrupt)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert app.is_running
        assert any("corrupt" in str(n.message) for n in app._notifications)
        await pilot.press("comma")  # earlier steps still replay
        await pilot.pause()
        assert app.state.step == 59


async def test_no_color_heatmap_uses_shades(synthetic_run, monkeypatch):
    """NO_COLOR terminals (and plain-text captures) still read the heatmap: one layer per row, shades."""
    monkeypatch.setenv("NO_COLOR", "1")
    app = LorascopeApp.replay(synthetic_run, start_step=45)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        heatmap = app.screen.query_one(Heatmap)
        assert heatmap.monochrome and not heatmap.compact
        rendered = heatmap.render().plain
        assert "▀" not in rendered and any(shade in rendered for shade in "░▒▓█")
        assert "··" in rendered  # the not-adapted cells
