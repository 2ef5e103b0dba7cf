"""The ordering rules of a live feed, on their own: in order, once, gaps asked for or (when unanswerable) skipped."""

from __future__ import annotations

import random

from lorascope.protocol.seq_merge import SeqMerger


def f(seq: int) -> dict:
    return {"seq": seq, "kind": "step"}


def seqs(frames) -> list[int]:
    return [x["seq"] for x in frames]


def test_in_order_frames_flow_straight_through():
    m = SeqMerger()
    out = []
    for s in range(5):
        m.add(f(s))
        got, missing = m.advance(fill_in_flight=False)
        out += got
        assert missing is None
    assert seqs(out) == [0, 1, 2, 3, 4] and len(m) == 0


def test_duplicates_are_dropped():
    m = SeqMerger()
    for s in (0, 1, 1, 0, 2):
        m.add(f(s))
    got, _ = m.advance(fill_in_flight=False)
    m.add(f(1))
    again, _ = m.advance(fill_in_flight=False)
    assert seqs(got) == [0, 1, 2] and again == []


def test_a_gap_is_asked_for_once_and_filled():
    m = SeqMerger()
    for s in (0, 1, 4, 5):
        m.add(f(s))
    got, missing = m.advance(fill_in_flight=False)
    assert seqs(got) == [0, 1] and missing == (2, 3)
    m.add(f(6))
    assert m.advance(fill_in_flight=True) == ([], None)  # a fill is on its way: wait, do not ask again
    for s in (2, 3):
        m.add(f(s))
    got, missing = m.advance(fill_in_flight=False, answered_up_to=3)
    assert seqs(got) == [2, 3, 4, 5, 6] and missing is None and m.gaps_skipped == 0


def test_an_answered_gap_that_stayed_empty_is_skipped():
    m = SeqMerger()
    for s in (0, 3):
        m.add(f(s))
    got, missing = m.advance(fill_in_flight=False)
    assert missing == (1, 2)
    got, missing = m.advance(fill_in_flight=False, answered_up_to=2)
    assert seqs(got) == [3] and missing is None and m.gaps_skipped == 1


def test_without_history_gaps_are_skipped_at_once():
    m = SeqMerger()
    m.can_fill = False
    for s in (5, 6, 9):
        m.add(f(s))
    got, missing = m.advance(fill_in_flight=False)
    assert seqs(got) == [5, 6, 9] and missing is None and m.gaps_skipped == 2


def test_filtered_streams_jump_without_asking():
    m = SeqMerger(filtered=True)
    for s in (7, 3, 12):
        m.add(f(s))
    got, missing = m.advance(fill_in_flight=False)
    assert seqs(got) == [3, 7, 12] and missing is None and m.gaps_skipped == 0


def test_snapshot_chunks_come_out_as_they_arrive():
    m = SeqMerger()
    m.add(f(900))  # a live frame that arrived before the history
    for s in range(0, 256):
        m.add(f(s))
    assert seqs(m.take_contiguous(255)) == list(range(256))
    assert m.last_seq == 255 and len(m) == 1


def test_any_arrival_order_ends_in_order_once():
    rng = random.Random(7)
    arrivals = [s for s in range(300) for _ in range(rng.choice((1, 1, 2)))]
    rng.shuffle(arrivals)
    m = SeqMerger()
    out = []
    for s in arrivals:
        m.add(f(s))
        got, _ = m.advance(fill_in_flight=True)  # never skip: everything arrives eventually
        out += got
    assert seqs(out) == list(range(300))
