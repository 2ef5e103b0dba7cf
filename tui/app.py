"""The lorascope Textual app: composes the screens, owns the feed and the redraw timer.

Live: a thread worker polls `LiveFeed` and drops frames into an inbox; one
`FramesArrived` message at a time tells the app to fold them into the
`RunState`; a timer redraws at most `REDRAW_HZ` times a second, so frames can
arrive much faster than the terminal can draw. Replay and compare never touch a
socket: their screens compute states from the recording.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from pathlib import Path

from textual import work
from textual.app import App
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.worker import get_current_worker

from .messages import FeedFailed, FeedStatus, FramesArrived
from .run_state import RunState
from .screens.dashboard import DashboardScreen
from .screens.help import HelpScreen

REDRAW_HZ = 10
INBOX_LIMIT = 50_000
"""Frames waiting to be folded in; past this the worker stops reading and lets the feed's gap filling catch up."""
APPLY_BATCH = 2_000
"""Frames folded per message handler call, so a huge snapshot never freezes the keyboard."""


class LorascopeApp(App):
    """One app for watch, replay and compare; build it with `live`, `replay` or `compare`."""

    CSS_PATH = "lorascope.tcss"
    TITLE = "lorascope"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [
        Binding("question_mark", "help", "Help", id="app.help"),
        Binding("q", "quit", "Quit", id="app.quit"),
    ]

    def __init__(self, mode: str, *, run_path=None, run_b=None, pub: str | None = None,
                 control: str | None = None, start_step: int | None = None, curve_dir: str | None = None) -> None:
        super().__init__()
        self.mode = mode
        self.run_path, self.run_b = run_path, run_b
        self.pub, self.control, self.curve_dir = pub, control, curve_dir
        self.start_step = start_step
        self.state = RunState()
        self.state.connection = "connecting" if mode == "live" else "replay"
        self.feed = None
        self.sent_requests: list[tuple[int | None, str, dict]] = []
        """Every control request this app sent: (request id, cmd, args)."""
        self.replies: list = []
        """Every ControlReply received (newest last)."""
        self.frames_applied = 0
        """Run frames folded into the state (heartbeats not counted)."""
        self._inbox: deque = deque()
        self._wake_pending = threading.Event()
        self._drawn_revision = -1
        self._last_feed_error = ""

    @classmethod
    def live(cls, pub: str, control: str | None = None, curve_dir: str | None = None) -> "LorascopeApp":
        return cls("live", pub=pub, control=control, curve_dir=curve_dir)

    @classmethod
    def replay(cls, path, start_step: int | None = None) -> "LorascopeApp":
        return cls("replay", run_path=Path(path), start_step=start_step)

    @classmethod
    def compare(cls, path_a, path_b, start_step: int | None = None) -> "LorascopeApp":
        return cls("compare", run_path=Path(path_a), run_b=Path(path_b), start_step=start_step)

    # ------------------------------------------------------------------ screens
    def on_mount(self) -> None:
        if self.mode == "replay":
            from .replay_model import ReplayModel
            from .screens.replay import ReplayScreen

            self.push_screen(ReplayScreen(ReplayModel(self.run_path), self.start_step))
        elif self.mode == "compare":
            from .replay_model import ReplayModel
            from .screens.compare import CompareScreen

            self.push_screen(CompareScreen(ReplayModel(self.run_path), ReplayModel(self.run_b), self.start_step))
        else:
            self.push_screen(DashboardScreen(live=True))
            self.run_feed()
        self.set_interval(1 / REDRAW_HZ, self.redraw)
        self.call_after_refresh(self.redraw)

    def set_state(self, state: RunState) -> None:
        """Replace the state being shown (replay cursor moved); drawn on the next tick."""
        self.state = state
        self._drawn_revision = -1
        self.redraw()

    def redraw(self) -> None:
        screen = self.screen
        if not isinstance(screen, DashboardScreen):
            return  # help, edit and compare screens draw themselves
        if self.state.revision == self._drawn_revision and screen.state is self.state:
            return
        try:
            screen.show_state(self.state)
        except NoMatches:
            return  # the screen is still composing: the next tick draws it
        self._drawn_revision = self.state.revision

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen.for_screen(self.screen, self))

    # ------------------------------------------------------------------ control
    def send_control(self, cmd: str, **args) -> int | None:
        """Send a control request to the trainer; the reply arrives as a notification."""
        if self.mode != "live" or self.feed is None:
            self.notify(f"{cmd}: no trainer to control ({self.mode})", severity="warning")
            self.sent_requests.append((None, cmd, args))
            return None
        request_id = self.feed.send(cmd, **args)
        self.sent_requests.append((request_id, cmd, args))
        self.notify(f"{cmd} sent", timeout=2)
        return request_id

    def request_continuation(self, probe_id: str, max_new_tokens: int = 20) -> int | None:
        return self.send_control("continue", probe_id=probe_id, max_new_tokens=max_new_tokens)

    def open_edit(self, probe_id: str, position: int) -> None:
        """The probe view's `e`: the edit panel (written by the edits engineer) for this position."""
        try:
            from .screens.edit import EditScreen
        except ImportError:
            self.notify("the edit panel is not available in this build", severity="warning")
            return
        self.push_screen(EditScreen(probe_id=probe_id, position=position))

    # ------------------------------------------------------------------ live feed
    @work(thread=True, exclusive=True, group="feed", exit_on_error=False)
    def run_feed(self) -> None:
        from lorascope.protocol.transport import LiveFeed

        worker = get_current_worker()
        try:
            feed = LiveFeed(self.pub, self.control, heartbeats=True, curve_dir=self.curve_dir)
        except Exception as exc:  # bad endpoint etc.: show it, don't crash the UI
            self.post_message(FeedFailed(str(exc)))
            return
        self.feed = feed
        last = None
        try:
            while not worker.is_cancelled:
                if len(self._inbox) > INBOX_LIMIT:
                    time.sleep(0.01)
                    continue
                items = feed.poll(50)
                if items:
                    self._inbox.extend(items)
                    if not self._wake_pending.is_set():
                        self._wake_pending.set()
                        self.post_message(FramesArrived())
                status = (feed.state, feed.frames_received, feed.gaps_filled, feed.error, getattr(feed, "gaps_skipped", 0))
                if status != last:
                    last = status
                    self.post_message(FeedStatus(*status))
        finally:
            feed.close()

    def on_frames_arrived(self, message: FramesArrived) -> None:
        self._wake_pending.clear()
        self.absorb(APPLY_BATCH)
        if self._inbox and not self._wake_pending.is_set():
            self._wake_pending.set()
            self.post_message(FramesArrived())

    def absorb(self, limit: int) -> int:
        """Fold up to `limit` waiting frames into the state; control replies become notifications."""
        from lorascope.protocol.frames import Frame, Heartbeat

        n = 0
        while self._inbox and n < limit:
            item = self._inbox.popleft()
            n += 1
            if isinstance(item, Frame):
                self.state.apply(item)
                if not isinstance(item, Heartbeat):  # heartbeats are not part of the run's history
                    self.frames_applied += 1
            else:
                self.on_control_reply(item)
        return n

    def on_control_reply(self, reply) -> None:
        self.replies.append(reply)
        if reply.ok:
            detail = ""
            if isinstance(reply.data, dict):
                detail = ", ".join(f"{k}={v}" for k, v in reply.data.items() if isinstance(v, (str, int, float)))[:80]
            self.notify(f"{reply.cmd}: ok {detail}".strip(), timeout=3)
        else:
            self.notify(f"{reply.cmd}: {reply.error}", severity="error", timeout=6)

    def on_feed_status(self, message: FeedStatus) -> None:
        self.state.connection = message.connection
        self.state.frames_received = message.frames_received
        self.state.gaps_filled = message.gaps_filled
        self.state.frames_dropped = message.gaps_lost
        if message.error and message.error != self._last_feed_error:
            self.notify(message.error, severity="warning", timeout=6)
        self._last_feed_error = message.error
        self.state.touch()

    def on_feed_failed(self, message: FeedFailed) -> None:
        self.state.connection = "disconnected"
        self.state.touch()
        self.notify(message.error, severity="error", timeout=10)
