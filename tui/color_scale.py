"""Colour scales that survive a 256-colour terminal.

Every colour is an xterm-256 palette entry, so what the user sees over SSH is
what a truecolor terminal shows: no silent down-conversion of near-identical
RGB shades into the same cell colour.
"""

from __future__ import annotations

import math

# Dark blue → teal → green → yellow → red: a sequential scale of 10 steps.
SEQUENTIAL = ["color(17)", "color(18)", "color(24)", "color(30)", "color(36)",
              "color(71)", "color(107)", "color(143)", "color(178)", "color(202)"]
# Blue (B < A) → grey (equal) → red (B > A) for differences.
DIVERGING = ["color(21)", "color(27)", "color(33)", "color(75)", "color(250)",
             "color(216)", "color(209)", "color(203)", "color(196)"]
MISSING = "color(236)"
"""Cells that are not adapted (NaN)."""


def is_finite(value: float) -> bool:
    return not (math.isnan(value) or math.isinf(value))


def scale_range(values: list[float], diverging: bool = False) -> tuple[float, float]:
    """(low, high) of the finite values; symmetric around 0 for a diverging scale."""
    finite = [v for v in values if is_finite(v)]
    if not finite:
        return (0.0, 1.0) if not diverging else (-1.0, 1.0)
    if diverging:
        top = max(abs(v) for v in finite) or 1.0
        return -top, top
    low, high = min(0.0, min(finite)), max(finite)
    return low, high if high > low else low + 1.0


def colour_for(value: float, low: float, high: float, diverging: bool = False) -> str:
    if not is_finite(value):
        return MISSING
    palette = DIVERGING if diverging else SEQUENTIAL
    frac = (value - low) / (high - low) if high > low else 0.0
    frac = min(1.0, max(0.0, frac))
    return palette[min(len(palette) - 1, int(frac * len(palette)))]


def kl_colour(kl: float, top: float) -> str:
    """Background for a probe token by its KL(base‖tuned); `top` is the probe's largest."""
    if not is_finite(kl) or top <= 0:
        return MISSING
    return colour_for(kl, 0.0, top)


def format_number(value: float) -> str:
    """Compact, fixed-width-ish number: 0.0123 → 1.2e-2, 3.4 → 3.40."""
    if not is_finite(value):
        return "–"
    if value == 0:
        return "0"
    magnitude = abs(value)
    if 0.01 <= magnitude < 1000:
        return f"{value:.3g}" if magnitude < 10 else f"{value:.1f}"
    mantissa, exponent = f"{value:.1e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def format_bytes(n: float) -> str:
    if not n:
        return "–"
    for unit in ("B", "K", "M", "G", "T"):
        if abs(n) < 1024 or unit == "T":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}" if abs(n) < 10 else f"{n:.0f}{unit}"
        n /= 1024
    return f"{n:.0f}T"


def format_duration(seconds: float | None) -> str:
    if seconds is None or not is_finite(seconds):
        return "–"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
