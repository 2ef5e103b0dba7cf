"""The volatility view: dispersion over steps (sparkline) and the table of spiking examples.

Moving the table's cursor onto a spike shows that example's text below the table.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Sparkline, Static

from ..color_scale import format_number

SPARK_POINTS = 200
"""Dispersion points drawn; the sparkline averages them into its width."""


class VolatilityView(Vertical):
    """Sparkline + spike table + the selected example's text."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._rows_key: object = None
        self._rows = []

    def compose(self) -> ComposeResult:
        yield Static("", id="vol-summary")
        yield Sparkline([], id="vol-spark")
        table = DataTable(id="vol-table", cursor_type="row", zebra_stripes=False)
        table.add_columns("step", "ex", "score", "loss", "text")
        yield table
        yield Static("", id="vol-detail")

    def show_state(self, state) -> None:
        steps, values = state.dispersion.points("dispersion")
        summary = self.query_one("#vol-summary", Static)
        if values:
            baseline = state.dispersion.last("baseline")
            tail = f", {len(state.spikes)} spikes" if state.spikes else ", calm: top |g|"
            summary.update(Text(f"disp {format_number(values[-1])} (base {format_number(baseline)})" + tail))
            self.query_one("#vol-spark", Sparkline).data = values[-SPARK_POINTS:]
        else:
            summary.update("no volatility frames yet")
            self.query_one("#vol-spark", Sparkline).data = []
        # Nothing spiked: the examples with the largest gradient norms lately, so the table still says something.
        self._show_spikes(list(state.spikes) if state.spikes else state.top_recent_examples())

    def _show_spikes(self, rows) -> None:
        key = tuple((r.step, r.example_id, r.snippet == "") for r in rows[:3]) + (len(rows),)
        if key == self._rows_key:
            return
        self._rows_key, self._rows = key, rows
        table = self.query_one("#vol-table", DataTable)
        cursor = table.cursor_row
        table.clear()
        for row in rows:
            snippet = row.snippet.replace("\n", " ")
            table.add_row(str(row.step), str(row.example_id), f"{row.score:.1f}", format_number(row.loss),
                          snippet[:60] if snippet else f"|g| {format_number(row.grad_norm)}")
        if rows:
            table.move_cursor(row=min(max(cursor, 0), len(rows) - 1))
        self._show_detail(table.cursor_row)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_detail(event.cursor_row)

    def _show_detail(self, index: int) -> None:
        detail = self.query_one("#vol-detail", Static)
        if 0 <= index < len(self._rows):
            row = self._rows[index]
            text = row.snippet or "(no text: only spikes carry a snippet)"
            detail.update(Text(f"#{row.example_id} step {row.step} loss {format_number(row.loss)} "
                               f"grad {format_number(row.grad_norm)} {row.tokens} tok: {text}"))
        else:
            detail.update("")

    @property
    def selected_spike(self):
        index = self.query_one("#vol-table", DataTable).cursor_row
        return self._rows[index] if 0 <= index < len(self._rows) else None
