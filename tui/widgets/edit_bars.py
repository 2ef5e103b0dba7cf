"""Token bars of the edit panel: the distribution at one probe position, a cursor, and the target preview.

Each row shows a token's tuned probability now and what it would be under the
edit being prepared: the chosen token at q, every other token keeping its share
of the rest, p'(j) = p(j)·(1 − q)/(1 − p(t)) — the trainer's own formula
(`lorascope.trainer.edits.target_distribution`), recomputed here in plain
Python because the UI never imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget

from lorascope.protocol.tokens import display_token

from .token_bars import bar, repr_token

NOW_STYLE = "color(214)"
TARGET_STYLE = "color(77)"


@dataclass
class Candidate:
    """A token the user can pick: from the top-k/anchors of a logit-shift frame, or typed."""

    label: str  # legible, from the token's bytes
    token_id: int | None  # None for a typed string the trainer has yet to look up
    p_now: float | None  # tuned probability at the position, None when not in the frame
    typed: str | None = None  # the typed text, sent as "token"


def candidates_at(position, anchor_ids: set[int] | None = None) -> list[Candidate]:
    """Top-k ∪ anchors of a PositionShift, most probable (tuned) first."""
    if position is None:
        return []
    rows = sorted(position.top, key=lambda t: -t.p_tuned)
    seen = {t.token_id for t in rows}
    rows += sorted((a for a in position.anchors if a.token_id not in seen), key=lambda t: -t.p_tuned)
    return [Candidate(display_token(t.token_bytes, t.token), t.token_id, t.p_tuned) for t in rows]


def preview_target(p_now: list[float | None], chosen: int, q: float) -> list[float | None]:
    """Target probabilities of the rows: the chosen row gets q, the others are rescaled by (1−q)/(1−p(t)).

    A chosen token whose probability is unknown (typed, outside the frame's top-k) counts as p(t) ≈ 0:
    it is below every shown token, so the preview is off by at most that small share.
    """
    p_t = p_now[chosen] or 0.0
    rest = 1.0 - p_t
    out: list[float | None] = []
    for i, p in enumerate(p_now):
        if i == chosen:
            out.append(q)
        elif p is None:
            out.append(None)
        else:
            out.append(p * (1.0 - q) / rest if rest > 0 else 0.0)
    return out


class EditBars(Widget, can_focus=True):
    """Rows `token  now-bar p → target-bar p'` with a cursor on the token to edit."""

    BINDINGS = [
        Binding("up,k", "cursor(-1)", "Token ↑", show=False, id="edit.up"),
        Binding("down,j", "cursor(1)", "Token ↓", show=False, id="edit.down"),
        Binding("enter", "confirm", "Send edit", id="edit.confirm"),
    ]

    cursor: reactive[int] = reactive(0)
    """Row of the token being edited."""
    q: reactive[float] = reactive(0.5)
    """Target probability for the token under the cursor."""

    @dataclass
    class Confirmed(Message):
        """The user confirmed the edit shown (Enter on the bars)."""

        candidate: Candidate
        q: float

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.candidates: list[Candidate] = []
        self.note = ""

    def set_candidates(self, candidates: list[Candidate], note: str = "") -> None:
        """New rows (a newer frame, or a typed token); the cursor stays on the same token if it is still there."""
        current = self.selected
        self.candidates = candidates
        self.note = note
        if current is not None:
            for i, c in enumerate(candidates):
                if (c.token_id, c.typed) == (current.token_id, current.typed):
                    self.cursor = i
                    break
        self.cursor = min(self.cursor, max(0, len(candidates) - 1))
        self.refresh(layout=True)

    @property
    def selected(self) -> Candidate | None:
        return self.candidates[self.cursor] if 0 <= self.cursor < len(self.candidates) else None

    def targets(self) -> list[float | None]:
        return preview_target([c.p_now for c in self.candidates], self.cursor, self.q) if self.candidates else []

    def action_cursor(self, delta: int) -> None:
        if self.candidates:
            self.cursor = (self.cursor + delta) % len(self.candidates)

    def action_confirm(self) -> None:
        if self.selected is not None:
            self.post_message(self.Confirmed(self.selected, self.q))

    def watch_cursor(self) -> None:
        self.refresh(layout=True)

    def watch_q(self) -> None:
        self.refresh(layout=True)

    def get_content_height(self, container, viewport, width: int) -> int:
        return max(1, len(self.candidates) + (1 if self.note else 0))

    def render(self) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis", end="")
        if self.note:
            text.append(self.note + ("\n" if self.candidates else ""), style="dim")
        if not self.candidates:
            if not self.note:
                text.append("no distribution for this position yet: type a token (t)", style="dim italic")
            return text
        width = max(30, self.size.width or 60)
        label_width = min(14, max(len(repr_token(c.label)) for c in self.candidates) + 1)
        bar_width = max(4, (width - 2 - label_width - 2 * 6 - 2) // 2)
        for i, (candidate, target) in enumerate(zip(self.candidates, self.targets())):
            if i:
                text.append("\n")
            chosen = i == self.cursor
            label = repr_token(candidate.label)
            if len(label) > label_width - 1:
                label = label[: label_width - 2] + "…"
            text.append("▶ " if chosen else "  ", style="bold color(214)")
            text.append(label.ljust(label_width), style="bold reverse" if chosen else "")
            if candidate.p_now is None:
                text.append("?".ljust(bar_width) + "    ? ", style="dim")
            else:
                text.append(bar(candidate.p_now, bar_width), style=NOW_STYLE)
                text.append(f"{candidate.p_now:5.2f} ", style=NOW_STYLE)
            text.append("→", style="dim")
            if target is None:
                text.append(" ?", style="dim")
            else:
                text.append(bar(target, bar_width), style=TARGET_STYLE + (" bold" if chosen else ""))
                text.append(f"{target:5.2f}", style=TARGET_STYLE + (" bold" if chosen else ""))
        return text
