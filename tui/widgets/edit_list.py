"""The list of a run's manual edits: live status, token probability, KL to target, collateral drift.

`x` (or Delete) on a row asks to cancel that edit; the screen sends the request.
Below the table, the selected edit's drift on every other probe and its message.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Static

from ..color_scale import format_number
from .token_bars import repr_token

STATE_STYLE = {"requested": "color(250)", "active": "color(75)", "achieved": "color(77)",
               "failed": "color(203)", "cancelled": "dim"}
OPEN_STATES = ("requested", "active")


def largest_drift(collateral: dict[str, float]) -> tuple[str, float] | None:
    """The other probe whose mean KL moved most since the edit began (signed)."""
    if not collateral:
        return None
    probe_id = max(collateral, key=lambda k: abs(collateral[k]))
    return probe_id, collateral[probe_id]


class EditTable(DataTable):
    """The table itself, so its keys show up in the footer and the help."""

    BINDINGS = [Binding("x,delete", "cancel_edit", "Cancel edit", id="edits.cancel")]

    @dataclass
    class CancelRequested(Message):
        """Cancel this edit."""

        edit_id: str

    def action_cancel_edit(self) -> None:
        edit = self.parent.selected_edit if isinstance(self.parent, EditList) else None
        if edit is None:
            self.app.bell()
            return
        if edit.state not in OPEN_STATES:
            self.app.notify(f"{edit.edit_id} is already {edit.state}", severity="warning", timeout=3)
            return
        self.post_message(self.CancelRequested(edit.edit_id))


class EditList(Vertical):
    """One row per edit, newest first."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.edits: list = []
        self._key: object = None

    def compose(self) -> ComposeResult:
        table = EditTable(id="edit-table", cursor_type="row", zebra_stripes=False)
        table.add_columns("edit", "probe@pos", "token", "q", "p now", "KL", "state", "steps", "drift")
        yield table
        yield Static("", id="edit-detail")

    def show_edits(self, edits: dict) -> None:
        """The run's edits (edit id -> latest EditUpdate); redrawn only when one changed."""
        rows = sorted(edits.values(), key=lambda e: -_number(e.edit_id))
        key = tuple((e.edit_id, e.state, e.seq, e.step) for e in rows)
        if key == self._key:
            return
        self._key, self.edits = key, rows
        table = self.query_one(EditTable)
        cursor = table.cursor_row
        table.clear()
        for e in rows:
            drift = largest_drift(e.collateral)
            table.add_row(
                e.edit_id,
                f"{e.probe_id}@{e.position}",
                repr_token(e.token),
                f"{e.target_p:.2f}",
                f"{e.p_token_start:.2f}→{e.p_token:.2f}",
                format_number(e.kl_to_target),
                Text(e.state, style=STATE_STYLE.get(e.state, "")),
                f"{e.steps_used}/{e.budget}",
                f"{drift[1]:+.3f}" if drift else "",
                key=e.edit_id,
            )
        if rows:
            table.move_cursor(row=min(max(cursor, 0), len(rows) - 1))
        self._show_detail()

    @property
    def selected_edit(self):
        index = self.query_one(EditTable).cursor_row
        return self.edits[index] if 0 <= index < len(self.edits) else None

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_detail()

    def _show_detail(self) -> None:
        detail = self.query_one("#edit-detail", Static)
        edit = self.selected_edit
        if edit is None:
            detail.update(Text("no edits yet", style="dim italic"))
            return
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(f"{edit.edit_id} ", style="bold")
        text.append(f"from step {edit.start_step}, λ {edit.weight:g}, tol {edit.tolerance:g}")
        if edit.collateral:
            text.append("  drift (Δ mean KL): ", style="dim")
            text.append(", ".join(f"{k} {v:+.4f}" for k, v in sorted(edit.collateral.items())))
        if edit.message:
            text.append(f"  {edit.message}", style="dim")
        detail.update(text)


def _number(edit_id: str) -> int:
    digits = "".join(ch for ch in edit_id if ch.isdigit())
    return int(digits) if digits else 0
