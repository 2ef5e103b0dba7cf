"""A bounded, downsampling time series: memory stays flat however long the run.

Points are appended one step at a time. When the buffer reaches its capacity,
adjacent pairs are averaged and the stride doubles, so a 1M-step run keeps at
most `capacity` points per series, evenly spread over the whole run (older
history is coarser only in the sense that every point is an average of `stride`
steps; the shape of a loss curve survives, single-step spikes are smoothed).
"""

from __future__ import annotations

import math


class History:
    """Several named series sharing one x axis (the step), at most `capacity` points."""

    def __init__(self, names: tuple[str, ...], capacity: int = 2048) -> None:
        if capacity < 4 or capacity % 2:
            raise ValueError("capacity must be an even number >= 4")
        self.names = names
        self.capacity = capacity
        self.stride = 1
        self.steps: list[float] = []
        self.series: dict[str, list[float]] = {name: [] for name in names}
        # Accumulates `stride` raw points before they become one stored point.
        self._pending_steps: list[float] = []
        self._pending: dict[str, list[float]] = {name: [] for name in names}

    def __len__(self) -> int:
        return len(self.steps) + (1 if self._pending_steps else 0)

    def append(self, step: float, **values: float) -> None:
        self._pending_steps.append(step)
        for name in self.names:
            self._pending[name].append(values.get(name, math.nan))
        if len(self._pending_steps) >= self.stride:
            self._flush_pending()

    def _flush_pending(self) -> None:
        self.steps.append(_mean(self._pending_steps))
        for name in self.names:
            self.series[name].append(_mean(self._pending[name]))
            self._pending[name] = []
        self._pending_steps = []
        if len(self.steps) >= self.capacity:
            self._halve()

    def _halve(self) -> None:
        self.steps = _pairwise_mean(self.steps)
        for name in self.names:
            self.series[name] = _pairwise_mean(self.series[name])
        self.stride *= 2

    def points(self, name: str) -> tuple[list[float], list[float]]:
        """(steps, values) including the partly filled last bucket, NaNs dropped."""
        xs = list(self.steps)
        ys = list(self.series[name])
        if self._pending_steps:
            xs.append(_mean(self._pending_steps))
            ys.append(_mean(self._pending[name]))
        keep = [i for i, y in enumerate(ys) if not math.isnan(y)]
        return [xs[i] for i in keep], [ys[i] for i in keep]

    def last(self, name: str) -> float:
        if self._pending_steps:
            return self._pending[name][-1]
        return self.series[name][-1] if self.series[name] else math.nan


def _mean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else math.nan


def _pairwise_mean(values: list[float]) -> list[float]:
    return [_mean(values[i : i + 2]) for i in range(0, len(values), 2)]
