"""The edit panel: correct one probe position's token probability by hand.

Opened from the probe view (`e`) for the selected position; a live run is paused
on opening, so the distribution shown is the one the edit will start from. Pick a
token with the cursor (top-k and anchors of the latest logit-shift frame) or type
one (`t`), set q with `+`/`-` (±0.05), `[`/`]` (±0.01) or type it (`v`), look at
the target distribution beside the current one, and send it with Enter. Below,
every edit of the run with its live state, token probability and collateral
drift; `x` on a row cancels it. `r` resumes training, Esc goes back.
"""

from __future__ import annotations

import math

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Input, Static

from lorascope.protocol.tokens import display_token

from ..widgets.edit_bars import Candidate, EditBars, candidates_at
from ..widgets.edit_list import EditList, EditTable
from ..widgets.token_bars import repr_token

POLL_S = 0.2  # how often the panel looks at the run state and the replies (the app folds frames in)
DEFAULTS = "λ 1 · tol 0.05 · budget 50"  # the trainer's defaults (lorascope.trainer.edit_requests)


def parse_q(text: str) -> float:
    """A probability typed as 0.6, .6 or 60%; ValueError with what is wrong."""
    raw = text.strip()
    percent = raw.endswith("%")
    try:
        value = float(raw.rstrip("%").strip())
    except ValueError:
        raise ValueError(f"q: {raw!r} is not a number") from None
    if percent:
        value /= 100.0
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"q: must be in [0, 1] (or 0–100%), got {raw!r}")
    return value


class EditScreen(Screen):
    """Prepare, preview and send a manual logit edit; follow and cancel the run's edits."""

    DEFAULT_CSS = """
    EditScreen { layout: vertical; }
    EditScreen #edit-header { height: auto; max-height: 3; padding: 0 1; background: $boost; }
    EditScreen #edit-bars-box { height: auto; max-height: 12; border: round $panel-lighten-2; }
    EditScreen #edit-bars-box:focus-within { border: round $accent; border-title-color: $accent; }
    EditScreen EditBars { height: auto; width: 1fr; }
    EditScreen #edit-controls { height: 1; padding: 0 1; }
    EditScreen #edit-inputs { height: 1; }
    EditScreen #edit-inputs Input { border: none; height: 1; padding: 0 1; width: 1fr; }
    EditScreen #edit-status { height: 1; padding: 0 1; }
    EditScreen EditList { height: 1fr; min-height: 4; border: round $panel-lighten-2; }
    EditScreen EditList:focus-within { border: round $accent; }
    EditScreen #edit-table { height: 1fr; }
    EditScreen #edit-detail { height: 1; }
    """

    BINDINGS = [
        Binding("escape", "close", "Back", id="edit.back"),
        Binding("plus,equals_sign", "nudge_q(0.05)", "q+", id="edit.q_up"),
        Binding("minus", "nudge_q(-0.05)", "q−", id="edit.q_down"),
        Binding("right_square_bracket", "nudge_q(0.01)", "q+.01", show=False, id="edit.q_up_fine"),
        Binding("left_square_bracket", "nudge_q(-0.01)", "q−.01", show=False, id="edit.q_down_fine"),
        Binding("t", "type_token", "Type token", id="edit.type_token"),
        Binding("v", "type_q", "Type q", id="edit.type_q"),
        Binding("p", "pause", "Pause", show=False, id="edit.pause"),
        Binding("r", "resume", "Resume", id="edit.resume"),
    ]

    def __init__(self, probe_id: str, position: int, *, name: str | None = None) -> None:
        super().__init__(name=name)
        self.probe_id = probe_id
        self.position = position
        self.typed: Candidate | None = None  # a token typed by the user, shown first
        self.live = False
        self.pending: dict[int, str] = {}  # request id -> what it was, until its reply comes
        self.replies_seen = 0
        self._revision = -1
        self.sent: list[dict] = []  # the edit requests this panel sent (args)

    def compose(self) -> ComposeResult:
        yield Static("", id="edit-header")
        with VerticalScroll(id="edit-bars-box", can_focus=False):
            yield EditBars(id="edit-bars")
        yield Static("", id="edit-controls")
        with Horizontal(id="edit-inputs"):
            yield Input(placeholder="t: type a token (a leading space counts)", id="token-input")
            yield Input(placeholder="v: type q, e.g. 0.6 or 60%", id="q-input")
        yield Static("", id="edit-status")
        yield EditList(id="edit-list")
        yield Footer()

    def on_mount(self) -> None:
        self.live = getattr(self.app, "mode", "") == "live"
        self.query_one("#edit-bars-box").border_title = f"✎ {self.probe_id} @ position {self.position}"
        self.query_one("#edit-bars-box").border_subtitle = "[#ffaf00]now[/] → [#5fd75f]target[/]"
        self.replies_seen = len(getattr(self.app, "replies", []))
        if self.live and self.app.state.state == "running":
            self._send("pause", "pause")  # edit the distribution as it is, not a moving one
        self.refresh_from_state(force=True)
        self.set_interval(POLL_S, self.refresh_from_state)
        self.query_one(EditBars).focus()

    # ------------------------------------------------------------------ state
    def refresh_from_state(self, force: bool = False) -> None:
        state = self.app.state
        self._check_replies()
        if not force and state.revision == self._revision:
            return
        self._revision = state.revision
        self.query_one("#edit-header", Static).update(self._header(state))
        shift = state.probe_shift(self.probe_id)
        position = next((p for p in shift.positions if p.position == self.position), None) if shift else None
        anchors = {a.token_id for a in state.run_start.anchors} if state.run_start else set()
        candidates = candidates_at(position, anchors)
        if self.typed is not None:
            candidates.insert(0, self.typed)
        note = f"tuned distribution @ step {state.shifts.step}" if position is not None and state.shifts else ""
        self.query_one(EditBars).set_candidates(candidates, note)
        self.query_one(EditList).show_edits(state.edits)
        self._show_controls()

    def _header(self, state) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis")
        info = state.probe_info(self.probe_id)
        if info is not None:
            raw = info.token_bytes or [t.encode() for t in info.tokens]
            for i, (b, fallback) in enumerate(zip(raw, info.tokens or [""] * len(raw))):
                shown = display_token(b, fallback)
                text.append(shown, style="bold reverse" if i == self.position else "")
            text.append(" → ?", style="bold color(214)")
        else:
            text.append(f"probe {self.probe_id!r} (no run start yet)", style="dim")
        text.append(f"   [{state.state}] step {state.step}", style="dim")
        return text

    def _show_controls(self) -> None:
        bars = self.query_one(EditBars)
        chosen = bars.selected
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append("q ", style="dim")
        text.append(f"{bars.q:.2f}", style="bold color(77)")
        text.append(" for ", style="dim")
        text.append(repr_token(chosen.label) if chosen else "—", style="bold")
        text.append(f"   {DEFAULTS}   Enter sends", style="dim")
        self.query_one("#edit-controls", Static).update(text)

    def _status(self, message: str, style: str = "") -> None:
        self.query_one("#edit-status", Static).update(Text(message, style=style, no_wrap=True, overflow="ellipsis"))

    # ------------------------------------------------------------------ requests
    def _send(self, cmd: str, what: str, **args) -> int | None:
        request_id = self.app.send_control(cmd, **args)
        if request_id is not None:
            self.pending[request_id] = what
        elif cmd == "edit":
            self._status(f"not sent: no trainer to control ({self.app.mode})", "color(203)")
        return request_id

    def _check_replies(self) -> None:
        replies = getattr(self.app, "replies", [])
        for reply in replies[self.replies_seen:]:
            what = self.pending.pop(reply.id, None)
            if what is None:
                continue
            if not reply.ok:
                self._status(f"{what}: {reply.error}", "bold color(203)")
            elif reply.cmd == "edit":
                data = reply.data or {}
                p = data.get("p_token")
                shown = f" p {p:.4f}" if isinstance(p, (int, float)) else ""
                self._status(f"{data.get('edit_id', '?')} {data.get('state', '')}: {what}{shown}", "color(77)")
            elif reply.cmd == "cancel_edit":
                self._status(f"{(reply.data or {}).get('edit_id', '?')} cancelled", "color(250)")
        self.replies_seen = len(replies)

    def on_edit_bars_confirmed(self, event: EditBars.Confirmed) -> None:
        candidate, q = event.candidate, round(event.q, 4)
        args = {"probe_id": self.probe_id, "position": self.position, "q": q}
        if candidate.token_id is not None:
            args["token_id"] = candidate.token_id
        else:
            args["token"] = candidate.typed
        self.sent.append(args)
        if self._send("edit", f"{repr_token(candidate.label)} → q {q:g}", **args) is not None:
            self._status(f"sent: {self.probe_id}@{self.position} {repr_token(candidate.label)} → q {q:g}")

    def on_edit_table_cancel_requested(self, event: EditTable.CancelRequested) -> None:
        self._send("cancel_edit", f"cancel {event.edit_id}", edit_id=event.edit_id)

    # ------------------------------------------------------------------ keys
    def action_nudge_q(self, delta: float) -> None:
        bars = self.query_one(EditBars)
        bars.q = min(1.0, max(0.0, round(bars.q + delta, 4)))
        self._show_controls()

    def action_type_token(self) -> None:
        self.query_one("#token-input", Input).focus()

    def action_type_q(self) -> None:
        field = self.query_one("#q-input", Input)
        field.value = f"{self.query_one(EditBars).q:g}"
        field.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        bars = self.query_one(EditBars)
        if event.input.id == "q-input":
            try:
                bars.q = parse_q(event.value)
            except ValueError as exc:
                self._status(str(exc), "bold color(203)")
                return
            self._status("")  # a good value clears the complaint about the previous one
            self._show_controls()
        elif event.input.id == "token-input" and event.value:
            match = next((c for c in bars.candidates if c.token_id is not None and c.label == event.value), None)
            if match is None:
                self.typed = Candidate(label=event.value, token_id=None, p_now=None, typed=event.value)
                self.refresh_from_state(force=True)
                bars.cursor = 0
            else:
                bars.cursor = bars.candidates.index(match)
            event.input.value = ""
            self._show_controls()
        bars.focus()

    def check_action(self, action: str, parameters) -> bool | None:
        if action in ("pause", "resume"):
            return self.live
        return True

    def action_pause(self) -> None:
        self._send("pause", "pause")

    def action_resume(self) -> None:
        self._send("resume", "resume")

    def action_close(self) -> None:
        focused = self.focused
        if isinstance(focused, Input):
            self.query_one(EditBars).focus()  # Esc leaves a field first, then the panel
            return
        self.app.pop_screen()
