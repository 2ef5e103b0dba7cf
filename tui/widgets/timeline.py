"""The replay timeline: a one-line track with the cursor, edit marks, play state and speed."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget

SPEEDS = (1, 2, 5, 10, 25, 50, 100, 250, 1000)
"""Steps advanced per second of play."""


class Timeline(Widget):
    """Cursor over [first, last]; the screen's keys move it."""

    cursor: reactive[int] = reactive(0)
    """The step every panel shows."""
    playing: reactive[bool] = reactive(False)
    speed: reactive[int] = reactive(5)
    """Steps per second while playing."""

    @dataclass
    class CursorMoved(Message):
        """The cursor step changed (by a key, a jump or playback)."""

        step: int

    def __init__(self, first: int, last: int, marks: list[int] | None = None, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.first, self.last = first, max(first, last)
        self.marks = sorted(set(marks or []))
        self.set_reactive(Timeline.cursor, self.last)

    def move_to(self, step: int) -> None:
        self.cursor = min(self.last, max(self.first, int(step)))

    def move_by(self, delta: int) -> None:
        self.move_to(self.cursor + delta)

    def watch_cursor(self, step: int) -> None:
        self.post_message(self.CursorMoved(step))

    def faster(self, direction: int) -> None:
        i = SPEEDS.index(self.speed) if self.speed in SPEEDS else 2
        self.speed = SPEEDS[min(len(SPEEDS) - 1, max(0, i + direction))]

    def render(self) -> Text:
        text = Text(no_wrap=True, overflow="crop")
        text.append(" ⏸ " if self.playing else " ⏵ ", style="bold reverse color(77)" if self.playing else "bold")
        text.append(f"×{self.speed:<4} ", style="dim")
        label = f"step {self.cursor}/{self.last} "
        text.append(label, style="bold")
        width = max(10, self.size.width - len(label) - 12)
        span = max(1, self.last - self.first)
        cursor_col = round((self.cursor - self.first) / span * (width - 1))
        mark_cols = {round((m - self.first) / span * (width - 1)) for m in self.marks if self.first <= m <= self.last}
        for col in range(width):
            if col == cursor_col:
                text.append("●", style="bold color(214)")
            elif col in mark_cols:
                text.append("✎", style="color(75)")
            elif col < cursor_col:
                text.append("━", style="color(74)")
            else:
                text.append("─", style="dim")
        return text
