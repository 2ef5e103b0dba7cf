"""Loss and learning-rate curves (textual-plotext), replotted only when the history changed."""

from __future__ import annotations

from textual_plotext import PlotextPlot

from ..color_scale import format_number


class LossPlot(PlotextPlot):
    """Loss on the left axis, learning rate on the right; an optional second run overlaid (compare)."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._series: list[tuple[str, list[float], list[float], str]] = []
        self._lr: tuple[list[float], list[float]] | None = None
        self._key: object = None
        self.cursor_step: float | None = None

    def update(self, series: list[tuple[str, list[float], list[float], str]],
               lr: tuple[list[float], list[float]] | None = None, cursor_step: float | None = None) -> None:
        """series: (label, steps, losses, colour). Replots only if something changed."""
        key = (tuple((label, len(xs), xs[-1] if xs else None, ys[-1] if ys else None) for label, xs, ys, _ in series),
               len(lr[0]) if lr else 0, cursor_step)
        if key == self._key:
            return
        self._key = key
        self._series, self._lr, self.cursor_step = series, lr, cursor_step
        self.replot()

    def replot(self) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        any_data = False
        first, last = None, None
        for label, xs, ys, colour in self._series:
            if xs:
                plt.plot(xs, ys, color=colour, marker="braille")
                any_data = True
                first = xs[0] if first is None else min(first, xs[0])
                last = xs[-1] if last is None else max(last, xs[-1])
        if self._lr and self._lr[0] and len(self._series) == 1 and max(self._lr[1]) > 0:
            lr_x, lr_y = self._lr
            plt.plot(lr_x, lr_y, color="gray", marker="braille", yside="right")
            top = max(lr_y)
            # plotext would print 0.000187; a short label keeps the plot wide in 40 columns.
            plt.yticks([0, top / 2, top], ["0", format_number(top / 2), format_number(top)], yside="right")
        if any_data and last is not None:
            ticks = sorted({int(round(first + (last - first) * i / 3)) for i in range(4)})
            plt.xticks(ticks, [str(t) for t in ticks])
        if self.cursor_step is not None and any_data:
            plt.vline(self.cursor_step, color="white")
        if not any_data:
            plt.title("no steps yet")
        self.refresh()
