"""Putting one run's frames in seq order, from two sources (snapshot and live stream): no gaps, no duplicates.

No sockets here: `LiveFeed` feeds it decoded maps and sends the snapshot requests
it asks for. Frames are plain maps (the wire form) so that a kind this client does
not know still takes its seq.
"""

from __future__ import annotations


class SeqMerger:
    """Holds frames that arrive early; hands them out strictly in seq order."""

    def __init__(self, *, filtered: bool = False):
        # With a kind filter, seqs jump by design: a jump is not a gap, and nothing can be asked for.
        self.filtered = filtered
        self.last_seq = -1
        self.gaps_skipped = 0  # ranges nobody could send (the trainer keeps no recording)
        self.can_fill = True  # False once the trainer said it has no history to send
        self._pending: dict[int, dict] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, frame: dict) -> None:
        """Hold a frame (map with an int "seq"); an old seq is dropped at once."""
        seq = frame["seq"]
        if seq > self.last_seq:
            self._pending.setdefault(seq, frame)

    def reset(self) -> None:
        """A new run: forget every seq."""
        self.last_seq = -1
        self._pending.clear()

    def keep_only(self, predicate) -> None:
        self._pending = {s: f for s, f in self._pending.items() if predicate(f)}

    def take_contiguous(self, up_to: int) -> list[dict]:
        """What a snapshot chunk (seqs up to `up_to`) made available, in order, without skipping or asking."""
        out: list[dict] = []
        pending = self._pending
        if self.filtered:
            for seq in sorted(s for s in pending if s <= up_to):
                if seq <= self.last_seq:
                    del pending[seq]
                else:
                    out.append(self._hand_out(seq))
            return out
        while self.last_seq + 1 in pending:
            out.append(self._hand_out(self.last_seq + 1))
        return out

    def advance(self, *, fill_in_flight: bool, answered_up_to: int | None = None) -> tuple[list[dict], tuple[int, int] | None]:
        """(frames now in order, range to ask for or None).

        `answered_up_to`: a snapshot has just answered everything up to this seq, so
        a hole at or below it cannot be filled and is skipped. While a fill is in
        flight and the next seq is missing, nothing moves.
        """
        pending = self._pending
        out: list[dict] = []
        if not pending or (answered_up_to is None and fill_in_flight and self.last_seq + 1 not in pending):
            return out, None
        for seq in sorted(pending):
            if seq <= self.last_seq:
                del pending[seq]  # a duplicate: the snapshot already had it
                continue
            if seq > self.last_seq + 1:
                answered = answered_up_to is not None and seq - 1 <= max(answered_up_to, self.last_seq)
                if not (self.filtered or not self.can_fill or answered):
                    return out, None if fill_in_flight else (self.last_seq + 1, seq - 1)
                if not self.filtered:
                    self.gaps_skipped += 1
            out.append(self._hand_out(seq))
        return out, None

    def _hand_out(self, seq: int) -> dict:
        self.last_seq = seq
        return self._pending.pop(seq)
