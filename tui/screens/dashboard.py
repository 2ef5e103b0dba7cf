"""The dashboard: run header, loss/LR plot, layer heatmap, probe view, volatility view.

The same screen serves live runs and replays: it renders whatever `RunState`
it is handed (`show_state`); control keys are active only when live.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer

from ..widgets.heatmap import Heatmap
from ..widgets.loss_plot import LossPlot
from ..widgets.probe_view import ProbeView
from ..widgets.run_header import RunHeader
from ..widgets.volatility_view import VolatilityView

PANELS = ("panel-loss", "panel-heatmap", "panel-probes", "panel-volatility")
PANEL_TITLES = {
    "panel-loss": "1 loss · lr",
    "panel-heatmap": "2 weight Δ",
    "panel-probes": "3 probes",
    "panel-volatility": "4 volatility",
}
# Colour keys live in the bottom border, so they cost no row inside the panel.
PANEL_SUBTITLES = {
    "panel-loss": "[#ff8700]━[/] loss [#8a8a8a]━[/] lr (right axis)",
    "panel-probes": "[#5fafd7]█[/] base [#ffaf00]█[/] tuned  * anchor",
}
CONTROL_ACTIONS = {"pause", "resume", "step_once", "save", "stop"}


class FocusablePlot(LossPlot, can_focus=True):
    """The loss plot, focusable so its panel can be selected and zoomed like the others."""


class DashboardScreen(Screen):
    """Four panels in a 2×2 grid; `z` zooms the focused one to the whole screen."""

    BINDINGS = [
        Binding("z", "zoom", "Zoom", id="dashboard.zoom"),
        Binding("1", "focus_panel(0)", "Loss", show=False, id="dashboard.focus_loss"),
        Binding("2", "focus_panel(1)", "Heatmap", show=False, id="dashboard.focus_heatmap"),
        Binding("3", "focus_panel(2)", "Probes", show=False, id="dashboard.focus_probes"),
        Binding("4", "focus_panel(3)", "Volatility", show=False, id="dashboard.focus_volatility"),
        Binding("p", "pause", "Pause", id="control.pause"),
        Binding("r", "resume", "Resume", id="control.resume"),
        Binding("n", "step_once", "Step", id="control.step"),
        Binding("s", "save", "Save", id="control.save"),
        Binding("X", "stop", "Stop", show=False, id="control.stop"),
    ]

    def __init__(self, *, live: bool = False, name: str | None = None) -> None:
        super().__init__(name=name)
        self.live = live
        self.state = None

    def compose(self) -> ComposeResult:
        yield RunHeader(id="header")
        with Container(id="panels"):
            with Container(id="panel-loss", classes="panel"):
                yield FocusablePlot(id="loss")
            with VerticalScroll(id="panel-heatmap", classes="panel", can_focus=False):
                yield Heatmap(id="heatmap")
            with VerticalScroll(id="panel-probes", classes="panel", can_focus=False):
                yield ProbeView(id="probes")
            with Container(id="panel-volatility", classes="panel"):
                yield VolatilityView(id="volatility")
        yield from self.compose_extra()
        yield Footer()

    def compose_extra(self) -> ComposeResult:
        """Room for subclasses (the replay timeline)."""
        return iter(())

    def on_mount(self) -> None:
        for panel_id, title in PANEL_TITLES.items():
            self.query_one(f"#{panel_id}").border_title = title
        self.query_one("#panel-loss").border_subtitle = PANEL_SUBTITLES["panel-loss"]
        self.query_one("#panel-probes").border_subtitle = PANEL_SUBTITLES["panel-probes"]
        self.query_one("#probes", ProbeView).focus()

    # ------------------------------------------------------------------ rendering
    def show_state(self, state, header_extra: str = "") -> None:
        """Render a RunState into every panel (called at most ~10×/s by the app)."""
        self.state = state
        with self.app.batch_update():
            self.query_one("#header", RunHeader).show_state(state, header_extra)
            xs, ys = state.history.points("loss")
            self.query_one("#loss", LossPlot).update([("loss", xs, ys, "orange")], lr=state.history.points("lr"))
            heatmap = self.query_one("#heatmap", Heatmap)
            note = f"@{state.deltas.step}" if state.deltas is not None else ""
            heatmap.show_deltas(state.layers, state.modules, state.deltas, note=note)
            self.query_one("#probes", ProbeView).show_state(state)
            self.query_one("#volatility", VolatilityView).show_state(state)

    # ------------------------------------------------------------------ panels
    def panel_of_focus(self):
        node = self.focused
        while node is not None and node is not self:
            if node.id in PANELS:
                return node
            node = node.parent
        return None

    def action_focus_panel(self, index: int) -> None:
        panel = self.query_one(f"#{PANELS[index]}")
        target = {0: "#loss", 1: "#heatmap", 2: "#probes", 3: "#vol-table"}[index]
        grid = self.query_one("#panels")
        if grid.has_class("zoom"):
            for other in grid.children:
                other.set_class(other is panel, "zoomed")
        # set_focus is immediate (Widget.focus is deferred): a `z` typed right after still finds this panel.
        self.set_focus(panel.query_one(target))

    def action_zoom(self) -> None:
        grid = self.query_one("#panels")
        panel = self.panel_of_focus()
        if grid.has_class("zoom") or panel is None:
            grid.remove_class("zoom")
            for child in grid.children:
                child.remove_class("zoomed")
        else:
            panel.add_class("zoomed")
            grid.add_class("zoom")
        self.query_one("#heatmap", Heatmap).call_after_refresh(self.query_one("#heatmap", Heatmap).on_resize)

    @property
    def zoomed_panel(self) -> str | None:
        for child in self.query_one("#panels").children:
            if child.has_class("zoomed"):
                return child.id
        return None

    # ------------------------------------------------------------------ control (live only)
    def check_action(self, action: str, parameters) -> bool | None:
        if action in CONTROL_ACTIONS:
            return self.live
        return True

    def action_pause(self) -> None:
        self.app.send_control("pause")

    def action_resume(self) -> None:
        self.app.send_control("resume")

    def action_step_once(self) -> None:
        self.app.send_control("step", n=1)

    def action_save(self) -> None:
        self.app.send_control("save")

    def action_stop(self) -> None:
        self.app.send_control("stop")

    # ------------------------------------------------------------------ probe requests
    def on_probe_view_continue_requested(self, event: ProbeView.ContinueRequested) -> None:
        self.app.request_continuation(event.probe_id)

    def on_probe_view_edit_requested(self, event: ProbeView.EditRequested) -> None:
        self.app.open_edit(event.probe_id, event.position)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        spike = self.query_one("#volatility", VolatilityView).selected_spike
        if spike is not None:
            self.app.notify(spike.snippet, title=f"example #{spike.example_id} (step {spike.step})", timeout=8)
