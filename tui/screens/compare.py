"""Compare two recorded runs: loss curves overlaid, heatmap difference B − A, the same probe in both.

One timeline drives both runs; each shows its state at the cursor step (the
latest frame of each kind at or before it), so runs with different cadences
still line up by step.
"""

from __future__ import annotations

import math

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container, Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer

from ..replay_model import ReplayModel
from ..widgets.heatmap import Heatmap
from ..widgets.loss_plot import LossPlot
from ..widgets.probe_view import ProbeView
from ..widgets.run_header import RunHeader
from ..widgets.timeline import Timeline

COLOUR_A, COLOUR_B = "orange", "cyan"


def difference(a, b, mode: str) -> list[list[float]] | None:
    """Cell-wise B − A of one WeightDeltas array; NaN where either run lacks the cell."""
    if a is None or b is None:
        return None
    rows_a, rows_b = getattr(a, mode).rows(), getattr(b, mode).rows()
    out = []
    for i in range(max(len(rows_a), len(rows_b))):
        ra = rows_a[i] if i < len(rows_a) else []
        rb = rows_b[i] if i < len(rows_b) else []
        out.append([
            (rb[j] - ra[j]) if j < len(ra) and j < len(rb) and not (math.isnan(ra[j]) or math.isnan(rb[j])) else math.nan
            for j in range(max(len(ra), len(rb)))
        ])
    return out


class FocusableLossPlot(LossPlot, can_focus=True):
    """Focusable so Tab reaches it like the other panels."""


class CompareScreen(Screen):
    """Keys: , . step, < > ten steps, Home/End, g is not needed here (the cursor is shared)."""

    BINDINGS = [
        Binding("comma", "step_by(-1)", "Back", id="compare.back"),
        Binding("full_stop", "step_by(1)", "Fwd", id="compare.forward"),
        Binding("less_than_sign", "step_by(-10)", "-10", show=False, id="compare.back10"),
        Binding("greater_than_sign", "step_by(10)", "+10", show=False, id="compare.forward10"),
        Binding("home", "jump_to('first')", "First", show=False, id="compare.first"),
        Binding("end", "jump_to('last')", "Last", show=False, id="compare.last"),
    ]

    def __init__(self, model_a: ReplayModel, model_b: ReplayModel, start_step: int | None = None) -> None:
        super().__init__()
        self.model_a, self.model_b = model_a, model_b
        self.first = min(model_a.first_step, model_b.first_step)
        self.last = max(model_a.last_step, model_b.last_step)
        common_last = min(model_a.last_step, model_b.last_step)
        self.start_step = common_last if start_step is None else start_step
        self.state_a = self.state_b = None

    def compose(self) -> ComposeResult:
        with Horizontal(id="compare-header"):
            yield RunHeader(id="header-a", classes="compare-run")
            yield RunHeader(id="header-b", classes="compare-run")
        with Container(id="panels"):
            with Container(id="panel-loss", classes="panel"):
                yield FocusableLossPlot(id="loss")
            with VerticalScroll(id="panel-heatmap", classes="panel", can_focus=False):
                yield Heatmap(id="heatmap")
            with VerticalScroll(id="panel-probe-a", classes="panel", can_focus=False):
                yield ProbeView(id="probes-a")
            with VerticalScroll(id="panel-probe-b", classes="panel", can_focus=False):
                yield ProbeView(id="probes-b")
        timeline = Timeline(self.first, self.last, id="timeline")
        timeline.set_reactive(Timeline.cursor, min(self.last, max(self.first, self.start_step)))
        yield timeline
        yield Footer()

    def on_mount(self) -> None:
        name_a, name_b = self.model_a.path.name, self.model_b.path.name
        self.query_one("#panel-loss").border_title = "loss: A vs B"
        self.query_one("#panel-loss").border_subtitle = f"[#ff8700]━[/] A {name_a}  [#00d7d7]━[/] B {name_b}"
        self.query_one("#panel-heatmap").border_title = "weight Δ: B − A"
        self.query_one("#panel-probe-a").border_title = f"A {name_a}"
        self.query_one("#panel-probe-b").border_title = f"B {name_b}"
        probes_a = self.query_one("#probes-a", ProbeView)
        self.query_one("#probes-b", ProbeView).can_focus = False  # B follows A: one selection, one focus
        self.watch(probes_a, "probe_index", self._sync_probe, init=False)
        self.watch(probes_a, "position", self._sync_probe, init=False)
        probes_a.focus()
        self.show_step(self.query_one("#timeline", Timeline).cursor)

    def on_timeline_cursor_moved(self, event: Timeline.CursorMoved) -> None:
        self.show_step(event.step)

    def show_step(self, step: int) -> None:
        self.state_a = self.model_a.state_at(min(step, self.model_a.last_step))
        self.state_b = self.model_b.state_at(min(step, self.model_b.last_step))
        a, b = self.state_a, self.state_b
        with self.app.batch_update():
            self.query_one("#header-a", RunHeader).show_run(a, "A", self.model_a.path.name)
            self.query_one("#header-b", RunHeader).show_run(b, "B", self.model_b.path.name)
            xa, ya = a.history.points("loss")
            xb, yb = b.history.points("loss")
            self.query_one("#loss", LossPlot).update([("A", xa, ya, COLOUR_A), ("B", xb, yb, COLOUR_B)])
            self._show_difference()
            self.query_one("#probes-a", ProbeView).show_state(a)
            self.query_one("#probes-b", ProbeView).show_state(b)
            self._sync_probe()

    def _show_difference(self) -> None:
        heatmap = self.query_one("#heatmap", Heatmap)
        a, b = self.state_a, self.state_b
        rows = difference(a.deltas, b.deltas, heatmap.mode)
        steps = f"@A{a.deltas.step} B{b.deltas.step}" if a.deltas and b.deltas else "(one run has no deltas yet)"
        heatmap.show_difference(a.layers or b.layers, a.modules or b.modules, rows, steps)

    def on_heatmap_mode_changed(self, event: Heatmap.ModeChanged) -> None:
        self._show_difference()

    def _sync_probe(self, *_args) -> None:
        """B shows the probe (and position) selected in A, matched by probe id."""
        probes_a, probes_b = self.query_one("#probes-a", ProbeView), self.query_one("#probes-b", ProbeView)
        if probes_a.probe_id in probes_b.probe_ids:
            probes_b.probe_index = probes_b.probe_ids.index(probes_a.probe_id)
        probes_b.position = probes_a.position

    # ------------------------------------------------------------------ timeline
    def action_step_by(self, delta: int) -> None:
        self.query_one("#timeline", Timeline).move_by(delta)

    def action_jump_to(self, where: str) -> None:
        self.query_one("#timeline", Timeline).move_to(self.first if where == "first" else self.last)
