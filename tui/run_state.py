"""What the widgets render: a run folded from its frames, with bounded memory.

Pure Python (no Textual, no numpy): live and replay both produce a `RunState`,
the widgets only ever read one. Live folds every frame in with `apply`; replay
builds one for the cursor step (see `replay_model.py`).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from lorascope.protocol.frames import (
    Checkpoint,
    Continuation,
    EditUpdate,
    Frame,
    Heartbeat,
    LogitShifts,
    Resources,
    RunEnd,
    RunStart,
    Status,
    StepMetrics,
    Volatility,
    WeightDeltas,
)

from .history import History

MAX_SPIKES = 200
"""Spiking examples kept for the volatility table (newest first); older ones drop."""

RECENT_VOLATILITY = 200
"""Volatility frames whose per-example figures are kept for "most volatile lately" (when nothing spiked)."""

RECENT_STEP_TIMES = 20
"""Step times averaged for the ETA."""


@dataclass
class SpikeRow:
    """One row of the volatility table: a spike and the step it happened at."""

    step: int
    example_id: int
    score: float
    loss: float
    grad_norm: float
    tokens: int
    snippet: str


class RunState:
    """A run as the UI sees it. `revision` grows on every change so redraws can be skipped."""

    def __init__(self, history_capacity: int = 2048) -> None:
        self.revision = 0
        self.run_start: RunStart | None = None
        self.run_id = ""
        self.step = 0
        self.last_seq = -1
        self.state = "starting"
        self.status_message = ""
        self.metrics: StepMetrics | None = None
        self.history = History(("loss", "lr", "aux_loss"), capacity=history_capacity)
        self.deltas: WeightDeltas | None = None
        self.shifts: LogitShifts | None = None
        self.volatility: Volatility | None = None
        self.dispersion = History(("dispersion", "baseline"), capacity=history_capacity)
        self.spikes: deque[SpikeRow] = deque(maxlen=MAX_SPIKES)
        # (step, example ids, losses, grad norms, token counts) of the latest volatility frames.
        self.recent_examples: deque[tuple] = deque(maxlen=RECENT_VOLATILITY)
        self.edits: dict[str, EditUpdate] = {}
        self.resources: Resources | None = None
        self.continuations: dict[str, Continuation] = {}
        self.checkpoint: Checkpoint | None = None
        self.run_end: RunEnd | None = None
        self.step_times: deque[float] = deque(maxlen=RECENT_STEP_TIMES)
        # Connection, set by the feed (live) or fixed to "replay".
        self.connection = "replay"
        self.frames_received = 0
        self.gaps_filled = 0
        self.frames_dropped = 0

    # ------------------------------------------------------------------ folding
    def apply(self, frame: Frame) -> None:
        """Fold one frame in (frames arrive in seq order)."""
        self.revision += 1
        if frame.seq >= 0 and not isinstance(frame, Heartbeat):  # a heartbeat repeats the last seq it sent
            self.last_seq = max(self.last_seq, frame.seq)
        if not isinstance(frame, Heartbeat):
            self.step = max(self.step, frame.step)
        if isinstance(frame, RunStart):
            self.start(frame)
        elif isinstance(frame, StepMetrics):
            self.add_metrics(frame)
        elif isinstance(frame, WeightDeltas):
            self.deltas = frame
        elif isinstance(frame, LogitShifts):
            self.shifts = frame
        elif isinstance(frame, Volatility):
            self.add_volatility(frame)
        elif isinstance(frame, EditUpdate):
            self.edits[frame.edit_id] = frame
        elif isinstance(frame, Status):
            self.state = frame.state
            self.status_message = frame.message
        elif isinstance(frame, Heartbeat):
            # A heartbeat speaks for the trainer now; it may arrive before the history has caught up.
            caught_up = frame.last_seq <= self.last_seq
            if frame.state and caught_up and self.state not in ("finished", "failed", "stopped"):
                self.state = frame.state
        elif isinstance(frame, Resources):
            self.resources = frame
        elif isinstance(frame, Continuation):
            self.continuations[frame.probe_id] = frame
        elif isinstance(frame, Checkpoint):
            self.checkpoint = frame
        elif isinstance(frame, RunEnd):
            self.run_end = frame
            self.state = {"finished": "finished", "failed": "failed"}.get(frame.reason, "stopped")
            if frame.message:
                self.status_message = frame.message

    def start(self, frame: RunStart) -> None:
        if self.run_id and frame.run_id != self.run_id:
            # A new run on the same endpoint: forget the old one entirely.
            connection, received = self.connection, self.frames_received
            self.__init__(self.history.capacity)
            self.connection, self.frames_received = connection, received
        self.run_start = frame
        self.run_id = frame.run_id
        if self.state == "starting":
            self.state = "running"

    def add_metrics(self, frame: StepMetrics) -> None:
        self.metrics = frame
        self.history.append(frame.step, loss=frame.loss, lr=frame.lr, aux_loss=frame.aux_loss)
        if frame.step_time > 0:
            self.step_times.append(frame.step_time)

    def add_volatility(self, frame: Volatility) -> None:
        self.volatility = frame
        self.add_recent_examples(frame)
        self.dispersion.append(frame.step, dispersion=frame.dispersion, baseline=frame.baseline)
        for spike in frame.spikes:
            self.add_volatility_spike(frame.step, spike)

    def add_volatility_spike(self, step: int, spike) -> None:
        self.spikes.appendleft(
            SpikeRow(step, spike.example_id, spike.score, spike.loss, spike.grad_norm, spike.tokens, spike.snippet)
        )

    def add_recent_examples(self, frame: Volatility) -> None:
        self.recent_examples.append((frame.step, list(frame.example_ids), frame.losses.values(),
                                     frame.grad_norms.values(), list(frame.token_counts), list(frame.snippets)))

    def top_recent_examples(self, count: int = 20) -> list[SpikeRow]:
        """The examples with the largest gradient norms in the recent volatility frames, largest first.

        Shown when nothing spiked: a calm run still has examples that move the adapter most.
        Their score is the gradient norm over the median of the window; their text comes
        from the frame's snippets (recordings made before frames carried them have none).
        """
        rows = []
        for step, ids, losses, norms, tokens, snippets in self.recent_examples:
            for i, example_id in enumerate(ids):
                grad = norms[i] if i < len(norms) else math.nan
                if not math.isnan(grad):
                    rows.append((grad, step, example_id, losses[i] if i < len(losses) else math.nan,
                                 tokens[i] if i < len(tokens) else 0, snippets[i] if i < len(snippets) else ""))
        if not rows:
            return []
        median = sorted(r[0] for r in rows)[len(rows) // 2] or 1.0
        rows.sort(key=lambda r: (-r[0], -r[1]))
        return [SpikeRow(step, example_id, grad / median, loss, grad, tok, text)
                for grad, step, example_id, loss, tok, text in rows[:count]]

    def touch(self) -> None:
        """Mark a change made from outside `apply` (connection state, counters)."""
        self.revision += 1

    # ------------------------------------------------------------------ derived
    @property
    def total_steps(self) -> int:
        return self.run_start.total_steps if self.run_start else 0

    @property
    def layers(self) -> list[str]:
        return list(self.run_start.layers) if self.run_start else []

    @property
    def modules(self) -> list[str]:
        return list(self.run_start.modules) if self.run_start else []

    def eta_seconds(self) -> float | None:
        """Remaining steps × mean recent step time (from the frames, never from the clock)."""
        if not self.step_times or not self.total_steps or self.state in ("finished", "failed", "stopped"):
            return None
        remaining = max(0, self.total_steps - self.step)
        return remaining * (sum(self.step_times) / len(self.step_times))

    def probe_ids(self) -> list[str]:
        if self.run_start and self.run_start.probes:
            return [p.probe_id for p in self.run_start.probes]
        if self.shifts:
            return [p.probe_id for p in self.shifts.probes]
        return []

    def probe_info(self, probe_id: str):
        if self.run_start:
            for probe in self.run_start.probes:
                if probe.probe_id == probe_id:
                    return probe
        return None

    def probe_shift(self, probe_id: str):
        if self.shifts:
            for probe in self.shifts.probes:
                if probe.probe_id == probe_id:
                    return probe
        return None


def finite(value: float) -> bool:
    return isinstance(value, (int, float)) and not math.isnan(value) and not math.isinf(value)
