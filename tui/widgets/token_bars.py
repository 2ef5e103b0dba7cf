"""Base vs tuned probability bars for the tokens at one probe position."""

from __future__ import annotations

from rich.text import Text

from lorascope.protocol.tokens import display_token

from ..token_text import completion_label

BLOCKS = " ▏▎▍▌▋▊▉█"
BASE_STYLE = "color(74)"
TUNED_STYLE = "color(214)"


def bar(fraction: float, width: int) -> str:
    """A horizontal bar `width` cells wide filled to `fraction`, with eighth-cell resolution."""
    fraction = min(1.0, max(0.0, fraction))
    eighths = round(fraction * width * 8)
    full, rest = divmod(eighths, 8)
    out = "█" * full + (BLOCKS[rest] if rest and full < width else "")
    return out.ljust(width)


def token_label(token, tail: bytes = b"") -> str:
    """A TokenProb's legible text: from its exact bytes (partial UTF-8 as \\xNN), quoted; with the
    character it completes when the probe ends mid-character ('\\x92'→В)."""
    shown = completion_label(tail, token.token_bytes, token.token) if tail else display_token(token.token_bytes, token.token)
    if tail and "→" in shown:
        raw, done = shown.rsplit("→", 1)
        return repr_token(raw) + "→" + done
    return repr_token(shown)


def repr_token(shown: str) -> str:
    return "'" + shown + "'"


def render_token_bars(position, anchor_ids: set[int], width: int, max_rows: int | None = None,
                      tail: bytes = b"") -> Text:
    """Rows `token  base-bar p  tuned-bar p`, sorted by tuned probability; anchors marked * (one cell wide in every terminal, unlike ⚓)."""
    text = Text(no_wrap=True, overflow="ellipsis")
    if position is None:
        text.append("no logit shifts yet", style="dim italic")
        return text
    rows = sorted(position.top, key=lambda t: -t.p_tuned)
    seen = {t.token_id for t in rows}
    rows += [a for a in position.anchors if a.token_id not in seen]
    if max_rows is not None:
        rows = rows[:max_rows]
    label_width = min(12, max((len(token_label(t, tail)) for t in rows), default=4) + 1)
    bar_width = max(4, (width - label_width - 2 - 2 * 6) // 2)
    for i, token in enumerate(rows):
        if i:
            text.append("\n")
        is_anchor = token.token_id in anchor_ids
        label = token_label(token, tail)
        if len(label) > label_width - 1:
            label = label[: label_width - 2] + "…"
        text.append("*" if is_anchor else " ", style="bold color(178)")
        text.append(label.ljust(label_width), style="bold" if is_anchor else "")
        text.append(bar(token.p_base, bar_width), style=BASE_STYLE)
        text.append(f"{token.p_base:5.2f} ", style=BASE_STYLE)
        text.append(bar(token.p_tuned, bar_width), style=TUNED_STYLE)
        text.append(f"{token.p_tuned:5.2f}", style=TUNED_STYLE)
    return text
