"""The state of a recorded run at any step, decoding only what that step needs.

Opening reads only the recording's index (record headers, no msgpack), then
splits it into per-kind arrays of (step, record position). The state at a cursor
step takes the latest frame of each kind at or before it (a bisect), and, for
the loss and dispersion curves, at most a few hundred evenly spaced frames up to
the cursor. Decoded frames sit in a small LRU cache so scrubbing is cheap.
"""

from __future__ import annotations

import bisect
from array import array
from collections import OrderedDict

import msgpack

from lorascope.protocol.codec import decode
from lorascope.protocol.recording import RunReader

from .run_state import MAX_SPIKES, RECENT_VOLATILITY, RunState, SpikeRow

CURVE_POINTS = 600
"""Step frames decoded for the loss curve (evenly spaced up to the cursor)."""
DISPERSION_POINTS = 300
SPIKE_WINDOW = 400
"""Volatility frames before the cursor scanned for the spike table."""
CACHE_FRAMES = 4096


class ReplayModel:
    """Per-kind step arrays over a RunReader's index."""

    def __init__(self, path) -> None:
        self.reader = RunReader(path)
        self.path = self.reader.path
        index = self.reader.index()
        self.steps_by_kind: dict[str, array] = {}
        self.positions_by_kind: dict[str, array] = {}
        steps, codes, names = index.steps, index.kind_codes, index.kind_names
        per_code_steps = [array("q") for _ in names]
        per_code_pos = [array("q") for _ in names]
        for i in range(len(index)):
            code = codes[i]
            per_code_steps[code].append(steps[i])
            per_code_pos[code].append(i)
        for code, name in enumerate(names):
            if per_code_pos[code]:
                self.steps_by_kind[name] = per_code_steps[code]
                self.positions_by_kind[name] = per_code_pos[code]
        all_steps = [s for s in (self.steps_by_kind.get("step") or steps)]
        self.first_step = min(all_steps) if all_steps else 0
        self.last_step = max(steps) if len(steps) else 0
        if "run_start" in self.steps_by_kind:
            self.first_step = min(self.first_step, self.steps_by_kind["run_start"][0])
        self.record_count = len(index)
        self.torn = self.reader.torn
        self._cache: OrderedDict[int, object] = OrderedDict()
        self._run_start = self._latest("run_start", self.last_step)
        self.spike_index: tuple[array, list[SpikeRow]] | None = None
        """(steps, rows) of every spike in the run, once `scan_spikes` has run."""

    # ------------------------------------------------------------------ decoding
    def frame_at(self, position: int):
        frame = self._cache.get(position)
        if frame is None:
            frame = decode(self.reader.payload_at(position))
            self._cache[position] = frame
            if len(self._cache) > CACHE_FRAMES:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(position)
        return frame

    def _count_upto(self, kind: str, step: int) -> int:
        """How many frames of `kind` have step <= `step`."""
        steps = self.steps_by_kind.get(kind)
        return bisect.bisect_right(steps, step) if steps is not None else 0

    def _latest(self, kind: str, step: int):
        n = self._count_upto(kind, step)
        return self.frame_at(self.positions_by_kind[kind][n - 1]) if n else None

    def _sampled(self, kind: str, step: int, points: int) -> list:
        n = self._count_upto(kind, step)
        if not n:
            return []
        positions = self.positions_by_kind[kind]
        # A grid fixed by the whole recording (not by the cursor), so scrubbing finds its frames in the cache.
        total = len(positions)
        stride = max(1, -(-total // points))
        chosen = list(range(0, n, stride))
        if chosen[-1] != n - 1:
            chosen.append(n - 1)
        return [self.frame_at(positions[i]) for i in chosen]

    def _all_upto(self, kind: str, step: int) -> list:
        n = self._count_upto(kind, step)
        positions = self.positions_by_kind.get(kind, array("q"))
        return [self.frame_at(positions[i]) for i in range(n)]

    def _recent(self, kind: str, step: int, count: int) -> list:
        n = self._count_upto(kind, step)
        positions = self.positions_by_kind.get(kind, array("q"))
        return [self.frame_at(positions[i]) for i in range(max(0, n - count), n)]

    # ------------------------------------------------------------------ queries
    def marks(self, kind: str = "edit") -> list[int]:
        """Steps with frames of `kind` (edit frames show on the timeline)."""
        return sorted(set(self.steps_by_kind.get(kind, [])))

    def run_start(self):
        return self._run_start

    def state_at(self, step: int) -> RunState:
        """A fresh RunState as the live UI would have had it just after `step`."""
        state = RunState(history_capacity=4 * CURVE_POINTS)
        state.connection = "replay"
        if self._run_start is not None:
            state.start(self._run_start)
        for frame in self._sampled("step", step, CURVE_POINTS):
            state.history.append(frame.step, loss=frame.loss, lr=frame.lr, aux_loss=frame.aux_loss)
        for frame in self._recent("step", step, 20):
            state.step_times.append(frame.step_time) if frame.step_time > 0 else None
            state.metrics = frame
        for frame in self._sampled("volatility", step, DISPERSION_POINTS):
            state.dispersion.append(frame.step, dispersion=frame.dispersion, baseline=frame.baseline)
        if self.spike_index is not None:  # the whole run's spikes, as a live UI would have kept them
            spike_steps, rows = self.spike_index
            n = bisect.bisect_right(spike_steps, step)
            state.spikes.extendleft(rows[max(0, n - MAX_SPIKES) : n])
        else:  # until the background scan is done: the spikes of the frames just before the cursor
            for frame in self._recent("volatility", step, SPIKE_WINDOW):
                for spike in frame.spikes:
                    state.add_volatility_spike(frame.step, spike)
        for frame in self._recent("volatility", step, RECENT_VOLATILITY):
            state.add_recent_examples(frame)
        state.volatility = self._latest("volatility", step)
        state.deltas = self._latest("weight_delta", step)
        state.shifts = self._latest("logit_shift", step)
        state.resources = self._latest("resources", step)
        state.checkpoint = self._latest("checkpoint", step)
        for frame in self._all_upto("edit", step):
            state.edits[frame.edit_id] = frame
        for frame in self._all_upto("continuation", step):
            state.continuations[frame.probe_id] = frame
        status = self._latest("status", step)
        if status is not None:
            state.state, state.status_message = status.state, status.message
        run_end = self._latest("run_end", step)
        if run_end is not None:
            state.apply(run_end)
        state.step = step
        state.last_seq = -1
        state.touch()
        return state

    def scan_spikes(self) -> None:
        """Index every spike of the run (safe on a worker thread: it only reads, and publishes at the end).

        Reads the volatility payloads as plain msgpack and builds rows only for
        spikes (~0.5 s for 100k steps), instead of decoding every frame.
        """
        steps, rows = array("q"), []
        for position in self.positions_by_kind.get("volatility", array("q")):
            data = msgpack.unpackb(self.reader.payload_at(position), raw=False, strict_map_key=False)
            for spike in data.get("spikes") or ():
                steps.append(int(data.get("step", 0)))
                rows.append(SpikeRow(int(data.get("step", 0)), int(spike.get("example_id", -1)),
                                     float(spike.get("score", 0.0)), float(spike.get("loss", 0.0)),
                                     float(spike.get("grad_norm", 0.0)), int(spike.get("tokens", 0)),
                                     str(spike.get("snippet", ""))))
        self.spike_index = (steps, rows)

    def close(self) -> None:
        self.reader.close()
