"""The layer heatmap: rows are layers, columns adapted modules, one colour per ‖ΔW‖_F.

When the panel is shorter than the model is deep, two layers share a text row
(the upper half-block "▀" takes the upper layer's colour as foreground and the
lower layer's as background), so 30 layers fit in 15 rows; the panel scrolls
for what is left. A legend line shows the mode and the scale with its ends.
"""

from __future__ import annotations

from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget

from ..color_scale import DIVERGING, MISSING, SEQUENTIAL, colour_for, format_number, scale_range

MODES = ("absolute", "relative", "since_last")
MODE_LABELS = {"absolute": "‖ΔW‖", "relative": "‖ΔW‖/‖W₀‖", "since_last": "Δ since last"}
SHORT_MODULES = {"q_proj": "q", "k_proj": "k", "v_proj": "v", "o_proj": "o", "gate_proj": "gat",
                 "up_proj": "up", "down_proj": "dwn", "c_attn": "att", "c_proj": "prj", "c_fc": "fc"}


SHADES = " ░▒▓█"


def shade_for(value: float, low: float, high: float) -> str:
    """A cell as repeated shade glyphs (for NO_COLOR terminals and text captures)."""
    if value != value:  # NaN: not adapted
        return "··"
    frac = (value - low) / (high - low) if high > low else 0.0
    level = min(len(SHADES) - 1, max(0, round(frac * (len(SHADES) - 1))))
    return SHADES[level] * 8


class Heatmap(Widget, can_focus=True):
    """Layers × modules; `m` cycles absolute / relative / since-last."""

    BINDINGS = [
        Binding("m", "cycle_mode", "Heat mode", id="heatmap.mode"),
        Binding("up", "scroll_layers(-1)", "Layers ↑", show=False, id="heatmap.up"),
        Binding("down", "scroll_layers(1)", "Layers ↓", show=False, id="heatmap.down"),
        Binding("pageup", "scroll_layers(-10)", "Page ↑", show=False, id="heatmap.pageup"),
        Binding("pagedown", "scroll_layers(10)", "Page ↓", show=False, id="heatmap.pagedown"),
    ]

    mode: reactive[str] = reactive("absolute")
    """Which array of the WeightDeltas frame is shown."""
    compact: reactive[bool] = reactive(True, layout=True)
    """Two layers per text row (half blocks) instead of one."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.layer_names: list[str] = []
        self.module_names: list[str] = []
        self.grid: list[list[float]] = []  # rows of the current mode's array
        self.step: int | None = None
        self.since_step: int | None = None
        self.diverging = False
        self.title_note = ""
        self._arrays: dict[str, list[list[float]]] = {}
        self._shown_key: object = None

    # ------------------------------------------------------------------ data
    def show_deltas(self, layers: list[str], modules: list[str], frame, note: str = "") -> None:
        """Show a WeightDeltas frame (or None when there is none yet)."""
        key = (id(frame), tuple(layers), tuple(modules), note)
        if key == self._shown_key and not self.diverging:
            return  # the same frame: nothing to redo at the redraw rate
        self._shown_key = key
        self.layer_names, self.module_names, self.diverging, self.title_note = layers, modules, False, note
        if frame is None:
            self._arrays, self.step = {}, None
        else:
            self._arrays = {mode: getattr(frame, mode).rows() for mode in MODES}
            self.step, self.since_step = frame.step, frame.since_step
        self._select()

    def show_difference(self, layers: list[str], modules: list[str], rows: list[list[float]] | None, note: str) -> None:
        """Show precomputed B − A rows on a diverging scale (compare screen)."""
        self._shown_key = None
        self.layer_names, self.module_names, self.diverging, self.title_note = layers, modules, True, note
        self._arrays = {self.mode: rows} if rows is not None else {}
        self.step = None
        self._select()

    def _select(self) -> None:
        self.grid = self._arrays.get(self.mode, [])
        self._resize_for_content()
        self.refresh(layout=True)

    def watch_mode(self) -> None:
        self._select()

    def action_scroll_layers(self, rows: int) -> None:
        """The panel scrolls (the heatmap itself is as tall as the model is deep)."""
        if self.parent is not None:
            self.parent.scroll_relative(y=rows, animate=False)

    def action_cycle_mode(self) -> None:
        self.mode = MODES[(MODES.index(self.mode) + 1) % len(MODES)]
        self.post_message(self.ModeChanged(self.mode))

    class ModeChanged(Message):
        """The heatmap's mode changed (the compare screen recomputes its difference)."""

        def __init__(self, mode: str) -> None:
            super().__init__()
            self.mode = mode

    # ------------------------------------------------------------------ layout
    def _resize_for_content(self) -> None:
        parent_height = self.parent.size.height if self.parent is not None else 0
        if self.monochrome:
            self.compact = False  # shades carry one value per cell: one layer per row
        elif parent_height:  # not laid out yet: keep the current choice
            self.compact = parent_height < len(self.layer_names) + 2

    def on_resize(self) -> None:
        self._resize_for_content()

    def on_mount(self) -> None:
        if self.parent is not None:
            self.watch(self.parent, "size", lambda _size: self._resize_for_content(), init=False)

    def get_content_height(self, container, viewport, width: int) -> int:
        if not self.grid:
            return 3  # legend, module names, "no weight deltas yet"
        rows = (len(self.layer_names) + 1) // 2 if self.compact else len(self.layer_names)
        return 2 + max(rows, 1)

    # ------------------------------------------------------------------ render
    @property
    def monochrome(self) -> bool:
        """NO_COLOR (or a plain-text capture): values as shades ░▒▓█ instead of colours."""
        try:
            return bool(self.app.no_color)
        except Exception:  # not mounted in an app
            return False

    def _cell_width(self) -> int:
        usable = max(10, self.size.width - 4)
        return max(2, min(8, usable // max(1, len(self.module_names) or 1)))

    def render(self) -> Text:
        values = [v for row in self.grid for v in row]
        low, high = scale_range(values, self.diverging)
        width = self._cell_width()
        text = Text(no_wrap=True, overflow="crop")
        text.append_text(self._legend(low, high))
        text.append("\n")
        text.append("   ", style="dim")
        for module in self.module_names:
            label = module if len(module) <= width - 1 else SHORT_MODULES.get(module, module)[: width - 1]
            text.append(label.center(width)[:width], style="bold")
        if not self.grid:
            text.append("\n  no weight deltas yet", style="dim italic")
            return text
        if self.compact:
            for top in range(0, len(self.layer_names), 2):
                text.append("\n")
                bottom = top + 1
                text.append(f"{self.layer_names[top]:>2}" if len(self.layer_names[top]) <= 2 else self.layer_names[top][-2:], style="dim")
                text.append("╴" if bottom < len(self.layer_names) else " ", style="dim")
                for m in range(len(self.module_names)):
                    upper = colour_for(self._value(top, m), low, high, self.diverging)
                    if bottom < len(self.layer_names):
                        lower = colour_for(self._value(bottom, m), low, high, self.diverging)
                        text.append("▀" * width, style=Style(color=upper, bgcolor=lower))
                    else:
                        text.append("▀" * width, style=Style(color=upper))
        else:
            for row in range(len(self.layer_names)):
                text.append("\n")
                text.append(f"{self.layer_names[row][-2:]:>2} ", style="dim")
                if self.monochrome:
                    for m in range(len(self.module_names)):
                        text.append(shade_for(self._value(row, m), low, high).ljust(width)[:width])
                    continue
                for m in range(len(self.module_names)):
                    value = self._value(row, m)
                    colour = colour_for(value, low, high, self.diverging)
                    label = format_number(value) if width >= 6 else ""
                    text.append(label.center(width)[:width], style=Style(bgcolor=colour, color="color(231)"))
        return text

    def _value(self, row: int, col: int) -> float:
        try:
            return self.grid[row][col]
        except IndexError:
            return float("nan")

    def _legend(self, low: float, high: float) -> Text:
        palette = DIVERGING if self.diverging else SEQUENTIAL
        legend = Text(no_wrap=True, overflow="crop")
        label = "B−A " + MODE_LABELS[self.mode] if self.diverging else MODE_LABELS[self.mode]
        legend.append(label, style="bold")
        legend.append(f" {format_number(low)} ")
        if self.monochrome:
            legend.append(SHADES[1:] + f" {format_number(high)}  · n/a")
            return legend
        for colour in palette:
            legend.append(" ", style=Style(bgcolor=colour))
        legend.append(f" {format_number(high)}")
        legend.append(" ", style="")
        legend.append(" ", style=Style(bgcolor=MISSING))
        legend.append("n/a", style="dim")
        if self.compact and self.layer_names:
            legend.append(" ▀=2 rows", style="dim")
        if self.title_note:
            legend.append(f" {self.title_note}", style="dim")
        return legend
