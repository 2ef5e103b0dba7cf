"""The probe view: probe text coloured by per-position KL, token bars for the selected position.

Keys (when focused): ←/→ position, ↑/↓ probe, `c` asks the trainer for a
continuation of the probe (base vs tuned, shown side by side), `e` opens the
edit panel for the selected position.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget

from lorascope.protocol.tokens import display_token

from ..color_scale import format_number, kl_colour
from ..token_text import incomplete_tail, probe_token_texts
from .token_bars import render_token_bars, repr_token

EDIT_STATE_STYLE = {"requested": "color(250)", "active": "color(75)", "achieved": "color(77)",
                    "failed": "color(203)", "cancelled": "dim"}


class ProbeView(Widget, can_focus=True):
    """One probe at a time; selection survives new frames."""

    BINDINGS = [
        Binding("left", "position(-1)", "Pos ←", show=False, id="probe.left"),
        Binding("right", "position(1)", "Pos →", show=False, id="probe.right"),
        Binding("up", "probe(-1)", "Probe ↑", show=False, id="probe.up"),
        Binding("down", "probe(1)", "Probe ↓", show=False, id="probe.down"),
        Binding("c", "continue_probe", "Cont.", id="probe.continue"),
        Binding("e", "edit_position", "Edit", id="probe.edit"),
    ]

    probe_index: reactive[int] = reactive(0)
    """Index into the run's probes."""
    position: reactive[int] = reactive(-1)
    """Selected position; -1 means the last one (where the answer is)."""

    @dataclass
    class EditRequested(Message):
        """The user asked to edit the distribution at this probe position."""

        probe_id: str
        position: int

    @dataclass
    class ContinueRequested(Message):
        """The user asked for a base vs tuned continuation of this probe."""

        probe_id: str

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.state = None
        self._shown_key: object = None

    def show_state(self, state) -> None:
        # Redraws come at up to 10/s with every kind of frame; only these change what this view shows.
        key = (id(state), id(state.run_start), id(state.shifts),
               tuple((e.edit_id, e.seq) for e in state.edits.values()),
               tuple(c.seq for c in state.continuations.values()))
        if key == self._shown_key:
            return
        self._shown_key = key
        self.state = state
        self.refresh(layout=True)

    # ------------------------------------------------------------------ selection
    @property
    def probe_ids(self) -> list[str]:
        return self.state.probe_ids() if self.state else []

    @property
    def probe_id(self) -> str | None:
        ids = self.probe_ids
        return ids[self.probe_index % len(ids)] if ids else None

    def _token_bytes(self) -> list[bytes]:
        info = self.state.probe_info(self.probe_id) if self.state and self.probe_id else None
        if info is None:
            return []
        return list(info.token_bytes) or [t.encode() for t in info.tokens]

    def _tokens(self) -> list[str]:
        """Each token alone, from its exact bytes (partial UTF-8 as \\xNN)."""
        info = self.state.probe_info(self.probe_id) if self.state and self.probe_id else None
        raw = self._token_bytes()
        fallbacks = (info.tokens if info else []) or [""] * len(raw)
        return [display_token(b, f) for b, f in zip(raw, fallbacks)]

    def selected_position(self) -> int:
        n = len(self._tokens())
        if not n:
            return 0
        return n - 1 if self.position < 0 else min(self.position, n - 1)

    def check_action(self, action: str, parameters) -> bool | None:
        """A continuation needs a trainer (live only); the edit panel needs one run (not compare)."""
        mode = getattr(self.app, "mode", "live")
        if action == "continue_probe":
            return mode == "live"
        if action == "edit_position":
            return mode in ("live", "replay")
        return True

    def on_focus(self) -> None:
        self.parent.scroll_home(animate=False) if self.parent is not None else None

    def action_position(self, delta: int) -> None:
        n = len(self._tokens())
        if n:
            self.position = (self.selected_position() + delta) % n

    def action_probe(self, delta: int) -> None:
        if self.probe_ids:
            self.probe_index = (self.probe_index + delta) % len(self.probe_ids)
            self.position = -1

    def action_continue_probe(self) -> None:
        if self.probe_id:
            self.post_message(self.ContinueRequested(self.probe_id))

    def action_edit_position(self) -> None:
        if self.probe_id:
            self.post_message(self.EditRequested(self.probe_id, self.selected_position()))

    def watch_probe_index(self) -> None:
        self.refresh(layout=True)

    def watch_position(self) -> None:
        self.refresh(layout=True)

    def get_content_height(self, container, viewport, width: int) -> int:
        return max(1, len(self.render().split()))

    # ------------------------------------------------------------------ render
    def render(self) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis", end="")
        state, probe_id = self.state, self.probe_id
        if state is None or probe_id is None:
            text.append("no probes yet", style="dim italic")
            return text
        width = max(20, self.size.width or 40)
        shift = state.probe_shift(probe_id)
        tokens = self._tokens()
        selected = self.selected_position()
        text.append(f"◂{self.probe_index % len(self.probe_ids) + 1}/{len(self.probe_ids)}▸ ", style="dim")
        text.append(probe_id, style="bold")
        if shift is not None:
            text.append(f"  KL̄ {format_number(shift.mean_kl)}", style="")
            if state.shifts is not None:
                text.append(f" @{state.shifts.step}", style="dim")
        text.append("\n")
        token_bytes = self._token_bytes()
        text.append_text(self._probe_text(probe_token_texts(token_bytes), shift, selected, width))
        position = None
        if shift is not None:
            position = next((p for p in shift.positions if p.position == selected), None)
        text.append("\n")
        shown = repr_token(tokens[selected]) if tokens else "''"
        text.append(f"pos {selected} {shown}→", style="bold")
        if position is not None:
            text.append(f" KL {format_number(position.kl)} H {format_number(position.entropy_base)}"
                        f"→{format_number(position.entropy_tuned)}")
        text.append("\n")
        # Edits of this probe come before the bars: in an 80×24 panel the bars' tail is what scrolls away.
        for edit in state.edits.values():
            if edit.probe_id != probe_id:
                continue
            text.append(f"✎{edit.edit_id} @{edit.position} {repr_token(edit.token)} q={edit.target_p:.2f} "
                        f"p={edit.p_token:.2f} ", style="")
            text.append(edit.state, style=EDIT_STATE_STYLE.get(edit.state, ""))
            text.append(f" at step {edit.step}", style="dim")  # p is as of then; the bars below are now
            text.append("\n")
        anchor_ids = {a.token_id for a in state.run_start.anchors} if state.run_start else set()
        tail = incomplete_tail(token_bytes[: selected + 1])  # the next token may finish a character
        text.append_text(render_token_bars(position, anchor_ids, width, tail=tail))
        continuation = state.continuations.get(probe_id)
        if continuation is not None:
            text.append("\n")
            text.append_text(self._continuation(continuation, width))
        return text

    def _probe_text(self, tokens: list[str], shift, selected: int, width: int) -> Text:
        """The probe's tokens, background by KL, the selected one underlined; wrapped by token."""
        kls = {p.position: p.kl for p in shift.positions} if shift is not None else {}
        top = max(kls.values(), default=0.0)
        text = Text(no_wrap=True, overflow="ellipsis")
        column = 0
        for i, token in enumerate(tokens):
            if column and column + len(token) > width:
                text.append("\n")
                column = 0
            style = Style(bgcolor=kl_colour(kls.get(i, float("nan")), top), color="color(231)")
            if i == selected:
                style += Style(reverse=True, bold=True, underline=True)
                token = token or "▏"  # a token whose bytes all went to the previous token's character
            text.append(token, style=style)
            column += len(token)
        return text

    def _continuation(self, continuation, width: int) -> Text:
        """Base and tuned continuations side by side (one line each when narrow)."""
        text = Text(no_wrap=True, overflow="ellipsis")
        half = max(10, (width - 3) // 2)
        base = continuation.base_text.replace("\n", "⏎")
        tuned = continuation.tuned_text.replace("\n", "⏎")
        text.append(f"cont @{continuation.step} ", style="dim")
        if width >= 70:
            text.append("\n")
            text.append(("base: " + base)[:half].ljust(half), style="color(74)")
            text.append(" │ ", style="dim")
            text.append(("tuned: " + tuned)[:half], style="color(214)")
        else:
            text.append("\n")
            text.append("base: " + base, style="color(74)")
            text.append("\n")
            text.append("tuned: " + tuned, style="color(214)")
        return text
