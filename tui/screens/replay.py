"""Replay: the dashboard plus a timeline; every panel shows the state at the cursor step."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Input

from lorascope.protocol.codec import ProtocolError
from lorascope.protocol.errors import UserError

from ..replay_model import ReplayModel
from ..widgets.timeline import Timeline
from .dashboard import DashboardScreen

PLAY_HZ = 10
"""Playback ticks per second; each tick advances speed/PLAY_HZ steps (redraws stay ≤ 10/s)."""


class ReplayScreen(DashboardScreen):
    """Timeline keys: , . step, < > ten steps, Home/End, g jump, space play, + - speed."""

    BINDINGS = [
        Binding("comma", "step_by(-1)", "Back", id="replay.back"),
        Binding("full_stop", "step_by(1)", "Fwd", id="replay.forward"),
        Binding("less_than_sign", "step_by(-10)", "-10", show=False, id="replay.back10"),
        Binding("greater_than_sign", "step_by(10)", "+10", show=False, id="replay.forward10"),
        Binding("home", "jump_to('first')", "First", show=False, id="replay.first"),
        Binding("end", "jump_to('last')", "Last", show=False, id="replay.last"),
        Binding("g", "ask_jump", "Jump", id="replay.jump"),
        Binding("space", "play", "Play", id="replay.play"),
        Binding("plus,equals_sign", "speed(1)", "Faster", show=False, id="replay.faster"),
        Binding("minus", "speed(-1)", "Slower", show=False, id="replay.slower"),
    ]

    def __init__(self, model: ReplayModel, start_step: int | None = None) -> None:
        super().__init__(live=False)
        self.model = model
        self.start_step = model.last_step if start_step is None else start_step
        self._play_timer = None
        self._shown_step: int | None = None

    def compose_extra(self) -> ComposeResult:
        timeline = Timeline(self.model.first_step, self.model.last_step, self.model.marks("edit"), id="timeline")
        timeline.set_reactive(Timeline.cursor, min(self.model.last_step, max(self.model.first_step, self.start_step)))
        yield timeline
        yield Input(placeholder=f"jump to step ({self.model.first_step}–{self.model.last_step}), Enter", id="jump",
                    type="integer")

    def on_mount(self) -> None:
        super().on_mount()
        self._load(self.timeline.cursor)
        self.run_worker(self._scan_spikes, thread=True, exclusive=True, group="spikes", exit_on_error=False)
        if self.model.torn:
            self.app.notify(self.model.torn, severity="warning", timeout=6)

    def _scan_spikes(self) -> None:
        """Worker thread: index the whole run's spikes, then redraw the cursor step with them."""
        try:
            self.model.scan_spikes()
        except (UserError, ProtocolError):
            return  # a corrupt record: the window of recent frames keeps serving the table
        self.app.call_from_thread(self._reload)

    def _reload(self) -> None:
        self._shown_step = None
        self._load(self.timeline.cursor)

    @property
    def timeline(self) -> Timeline:
        return self.query_one("#timeline", Timeline)

    @property
    def cursor(self) -> int:
        return self.timeline.cursor

    def _load(self, step: int) -> None:
        if step != self._shown_step:
            self._shown_step = step
            try:
                self.app.set_state(self.model.state_at(step))
            except (UserError, ProtocolError) as exc:  # e.g. a corrupt record: say where, keep the UI
                self.app.notify(str(exc), severity="error", timeout=10)

    def on_timeline_cursor_moved(self, event: Timeline.CursorMoved) -> None:
        self._load(event.step)

    # ------------------------------------------------------------------ actions
    def action_step_by(self, delta: int) -> None:
        self.timeline.move_by(delta)

    def action_jump_to(self, where: str) -> None:
        self.timeline.move_to(self.model.first_step if where == "first" else self.model.last_step)

    def action_ask_jump(self) -> None:
        box = self.query_one("#jump", Input)
        box.add_class("visible")
        box.value = ""
        box.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "jump":
            return
        event.input.remove_class("visible")
        try:
            self.jump(event.value)
        except UserError as exc:
            self.app.notify(str(exc), severity="error")
        self.query_one("#probes").focus()

    def jump(self, value: str) -> None:
        try:
            step = int(value)
        except ValueError:
            raise UserError(f"jump: {value!r} is not a step number") from None
        if not self.model.first_step <= step <= self.model.last_step:
            raise UserError(f"jump: step {step} is outside this recording ({self.model.first_step}–{self.model.last_step})")
        self.timeline.move_to(step)

    def key_escape(self) -> None:
        box = self.query_one("#jump", Input)
        if box.has_class("visible"):
            box.remove_class("visible")
            self.query_one("#probes").focus()

    def action_play(self) -> None:
        timeline = self.timeline
        timeline.playing = not timeline.playing
        if timeline.playing:
            if timeline.cursor >= self.model.last_step:
                timeline.move_to(self.model.first_step)
            self._carry = 0.0
            self._play_timer = self.set_interval(1 / PLAY_HZ, self._tick)
        elif self._play_timer is not None:
            self._play_timer.stop()
            self._play_timer = None

    def _tick(self) -> None:
        timeline = self.timeline
        self._carry += timeline.speed / PLAY_HZ
        whole = int(self._carry)
        if whole:
            self._carry -= whole
            timeline.move_by(whole)
        if timeline.cursor >= self.model.last_step:
            self.action_play()

    def action_speed(self, direction: int) -> None:
        self.timeline.faster(direction)
