"""The progress line on stderr when no UI is attached: step, bar, loss, tokens/s, ETA.

On a terminal it redraws one line with `\\r`; into a file (`--watch` sends the
trainer's stderr to train.log) it writes a plain line every `log_every` steps.
"""

from __future__ import annotations

import sys
import time

BAR_WIDTH = 20


class ProgressLine:
    def __init__(self, total_steps: int, *, stream=None, enabled: bool = True, log_every: int = 10):
        self.total = max(total_steps, 1)
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.log_every = log_every
        self.started = time.monotonic()
        self.first_step: int | None = None
        self._drawn = False

    def update(self, step: int, *, loss: float, tokens_per_s: float, state: str = "running") -> None:
        if not self.enabled:
            return
        if self.first_step is None:
            self.first_step, self.started = step - 1, time.monotonic()
        done = step - self.first_step
        rate = done / max(time.monotonic() - self.started, 1e-9)
        eta = (self.total - step) / rate if rate > 0 else 0.0
        filled = int(BAR_WIDTH * min(step / self.total, 1.0))
        bar = "█" * filled + "░" * (BAR_WIDTH - filled)
        line = (f"step {step}/{self.total} ▕{bar}▏ loss {loss:.4f} · {tokens_per_s:,.0f} tok/s"
                f" · ETA {_clock(eta)}" + ("" if state == "running" else f" · {state}"))
        if self.tty:
            self.stream.write("\r" + line + "\x1b[K")
            self._drawn = True
        elif step % self.log_every == 0 or step == self.total or state != "running":
            self.stream.write(line + "\n")
        self.stream.flush()

    def message(self, text: str) -> None:
        """A line of its own (state changes, checkpoints), without breaking the bar."""
        if not self.enabled:
            return
        if self._drawn:
            self.stream.write("\n")
            self._drawn = False
        self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False


def _clock(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
