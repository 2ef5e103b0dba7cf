"""`?`: every key binding of the screen underneath, its panels and the app, grouped."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from ..widgets.heatmap import Heatmap
from ..widgets.probe_view import ProbeView

KEY_NAMES = {"comma": ",", "full_stop": ".", "less_than_sign": "<", "greater_than_sign": ">",
             "question_mark": "?", "plus": "+", "equals_sign": "=", "minus": "-", "space": "Space",
             "escape": "Esc", "home": "Home", "end": "End", "left": "←", "right": "→", "up": "↑", "down": "↓",
             "tab": "Tab", "shift+tab": "Shift+Tab", "pageup": "PgUp", "pagedown": "PgDn"}


def key_label(keys: str) -> str:
    return "/".join(KEY_NAMES.get(k, k) for k in keys.split(","))


def binding_rows(bindings) -> list[tuple[str, str]]:
    rows = []
    for b in bindings:
        if isinstance(b, Binding):
            rows.append((key_label(b.key), b.description or b.action))
        else:
            rows.append((key_label(b[0]), b[2] if len(b) > 2 else b[1]))
    return rows


class HelpScreen(ModalScreen):
    """A scrollable list of keys; Esc, q or ? closes it."""

    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close", id="help.close")]

    def __init__(self, sections: list[tuple[str, list[tuple[str, str]]]]) -> None:
        super().__init__()
        self.sections = sections

    @classmethod
    def for_screen(cls, screen, app) -> "HelpScreen":
        sections = []
        screen_rows = []
        for klass in type(screen).__mro__:
            if "BINDINGS" in vars(klass) and klass.__module__.startswith("lorascope"):
                screen_rows += binding_rows(vars(klass)["BINDINGS"])
        if not getattr(screen, "live", True):
            screen_rows = [r for r in screen_rows if r[1] not in ("Pause", "Resume", "Step", "Save", "Stop")]
        sections.append(("This screen", screen_rows))
        sections.append(("Probe view (panel 3)", binding_rows(ProbeView.BINDINGS)))
        sections.append(("Heatmap (panel 2)", binding_rows(Heatmap.BINDINGS)))
        sections.append(("Everywhere", binding_rows(type(app).BINDINGS) + [("Tab/Shift+Tab", "next / previous panel")]))
        return cls(sections)

    def compose(self) -> ComposeResult:
        text = Text()
        text.append("lorascope keys\n", style="bold")
        for title, rows in self.sections:
            text.append(f"\n{title}\n", style="bold underline")
            for key, description in rows:
                text.append(f"  {key:<14}", style="bold color(214)")
                text.append(f"{description}\n")
        text.append("\n↑/↓ PgUp/PgDn scroll; Esc closes this help.", style="dim")
        with VerticalScroll(id="help-body"):
            yield Static(text)

    def on_mount(self) -> None:
        self.query_one("#help-body").focus()

    def action_dismiss(self) -> None:
        self.dismiss()
