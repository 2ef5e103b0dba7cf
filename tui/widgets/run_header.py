"""The run header: what is training, where it is, how fast, how much memory, and the connection."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from ..color_scale import format_bytes, format_duration, format_number

STATE_STYLES = {
    "starting": "bold color(250)", "running": "bold color(77)", "paused": "bold color(214)",
    "finished": "bold color(75)", "failed": "bold color(203)", "stopped": "bold color(250)",
}
CONNECTION_STYLES = {
    "replay": "color(75)", "live": "color(77)", "connecting": "color(214)",
    "stale": "color(214)", "disconnected": "bold color(203)",
}


class RunHeader(Static):
    """Two lines; everything comes from the frames (rates from the recording, not the clock)."""

    def show_state(self, state, extra: str = "") -> None:
        self.update(render_header(state, self.size.width or 80, extra))

    def show_run(self, state, label: str, name: str) -> None:
        """Half-width header for compare: which run, where, in what state first; the model after."""
        self.update(render_compare_header(state, label, name))


def render_header(state, width: int, extra: str = "") -> Text:
    start = state.run_start
    text = Text(no_wrap=True, overflow="ellipsis")
    model = start.model if start else "waiting for run start"
    if model.startswith("embedded:"):
        model = model.split(":", 1)[1]
    text.append(model, style="bold")
    if start and start.adapter:
        a = start.adapter
        alpha = float(a.get("alpha", 0) or 0)
        text.append(f" r{a.get('r', '?')} α{int(alpha) if alpha.is_integer() else format_number(alpha)}")
        if a.get("rslora"):
            text.append(" rs")
        text.append(f" {len(start.layers)}L×{len(start.modules)}M", style="dim")
    text.append("  step ")
    text.append(f"{state.step}/{state.total_steps or '?'}", style="bold")
    text.append("  ")
    text.append(f" {state.state} ", style=STATE_STYLES.get(state.state, "bold") + " reverse")
    if state.status_message and state.status_message != state.state:
        text.append(f" {state.status_message}", style="dim")
    text.append("\n")
    metrics = state.metrics
    if metrics is not None:
        text.append(f"loss {format_number(metrics.loss)}  {metrics.tokens_per_s:.0f} tok/s")
    eta = state.eta_seconds()
    if eta is not None:
        text.append(f"  ETA {format_duration(eta)}")
    estimate = start.estimate.total if start else 0
    measured = state.resources.peak_bytes if state.resources else 0
    if estimate or measured:
        source = f" {state.resources.source}" if state.resources else ""
        text.append(f"  mem est {format_bytes(estimate)} / peak {format_bytes(measured)}{source}")
    text.append("  ")
    text.append(f"● {state.connection}", style=CONNECTION_STYLES.get(state.connection, ""))
    if state.connection != "replay":
        text.append(f" {state.frames_received}fr gaps {state.gaps_filled} lost {state.frames_dropped}", style="dim")
    if extra:
        text.append(f"  {extra}", style="dim")
    return text


def render_compare_header(state, label: str, name: str) -> Text:
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(f"{label} ", style="bold reverse")
    text.append(f" {name}  ", style="bold")
    text.append(f"step {state.step}/{state.total_steps or '?'} ")
    text.append(f" {state.state} ", style=STATE_STYLES.get(state.state, "bold") + " reverse")
    text.append("\n")
    if state.metrics is not None:
        text.append(f"loss {format_number(state.metrics.loss)}  ")
    start = state.run_start
    if start is not None:
        model = start.model.split(":", 1)[1] if start.model.startswith("embedded:") else start.model
        text.append(f"{model} r{start.adapter.get('r', '?')}", style="dim")
    return text
