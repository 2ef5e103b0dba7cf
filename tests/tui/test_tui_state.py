"""The run-state model: bounded memory on long runs, a new run resets it, derived figures come from frames."""

from __future__ import annotations

import math

from synthetic_run import synthetic_frames

from lorascope.protocol.frames import RunStart, Spike, StepMetrics, Volatility
from lorascope.tui.history import History
from lorascope.tui.run_state import MAX_SPIKES, RunState


def test_history_stays_bounded_and_keeps_the_shape():
    history = History(("loss",), capacity=256)
    for step in range(100_000):
        history.append(step, loss=10.0 - step / 10_000)
    xs, ys = history.points("loss")
    assert len(xs) <= 256 and history.stride >= 256
    assert xs[0] < 1_000 and xs[-1] > 99_000  # the whole run is still covered
    assert all(a > b for a, b in zip(ys, ys[1:]))  # and a falling curve still falls
    assert math.isclose(ys[-1], 10.0 - 99_999 / 10_000, abs_tol=0.05)


def test_history_skips_missing_values():
    history = History(("loss", "lr"), capacity=8)
    history.append(1, loss=2.0)
    history.append(2, loss=1.0, lr=0.1)
    assert history.points("lr") == ([2], [0.1])
    assert history.points("loss") == ([1, 2], [2.0, 1.0])


def test_spike_table_is_capped():
    state = RunState()
    for step in range(MAX_SPIKES * 3):
        state.apply(Volatility(step=step, seq=step, spikes=[Spike(step, 1.0, 1.0, 4.0, 10, f"example {step}")]))
    assert len(state.spikes) == MAX_SPIKES
    assert state.spikes[0].step == MAX_SPIKES * 3 - 1  # newest first


def test_a_new_run_on_the_same_endpoint_resets_the_state():
    state = RunState()
    state.connection = "live"
    for frame in synthetic_frames(10):
        frame.run_id = "first"
        state.apply(frame)
    assert state.step == 10 and state.run_end is not None
    state.apply(RunStart(run_id="second", seq=0, total_steps=5))
    assert state.run_id == "second" and state.step == 0 and state.run_end is None and len(state.history) == 0
    assert state.connection == "live"  # the connection is not the run's


def test_eta_and_rates_come_from_the_frames_not_the_clock():
    state = RunState()
    state.apply(RunStart(seq=0, total_steps=100))
    for step in range(1, 11):
        state.apply(StepMetrics(seq=step, step=step, loss=1.0, step_time=2.0, tokens_per_s=250.0))
    assert state.eta_seconds() == 90 * 2.0


def test_replay_decodes_only_what_the_cursor_needs(tmp_path):
    """Opening a long recording reads the index; a state decodes a bounded sample, not every frame."""
    from synthetic_run import write_synthetic_run

    from lorascope.tui.replay_model import CURVE_POINTS, DISPERSION_POINTS, SPIKE_WINDOW, ReplayModel

    path = write_synthetic_run(tmp_path / "long.lsr", 3000, deltas_every=10, shifts_every=10, with_edits=False)
    model = ReplayModel(path)
    assert len(model._cache) == 1  # only the run start was decoded on opening
    state = model.state_at(2000)
    bound = CURVE_POINTS + DISPERSION_POINTS + SPIKE_WINDOW + 40
    assert len(model._cache) < bound < model.record_count
    xs, _ = state.history.points("loss")
    assert xs[0] == 1 and xs[-1] == 2000 and len(xs) <= CURVE_POINTS + 1  # the curve spans the run up to the cursor
    before = len(model._cache)
    model.state_at(2010)  # scrubbing reuses the sampled grid
    assert len(model._cache) - before < 40
    model.close()


def test_probe_text_reads_whole_characters_across_token_boundaries():
    from lorascope.tui.token_text import completion_label, incomplete_tail, probe_token_texts

    tokens = [b"\xd0", "Столица".encode()[1:], b" \xd0", "Франции".encode()[1:], " —".encode()]
    texts = probe_token_texts(tokens)
    assert "".join(texts) == "Столица Франции —" and all(texts)  # every token keeps something to select
    assert texts[0] == "С" and texts[2] == " Ф"
    assert probe_token_texts([b"ok", b" \xd0"]) == ["ok", " \\xd0"]  # never finished: its byte, never U+FFFD
    assert probe_token_texts([b"a\nb"]) == ["a\\nb"]
    assert incomplete_tail([b"x", b" \xd0"]) == b"\xd0" and incomplete_tail(tokens) == b""
    assert completion_label(b"\xd0", b"\x92") == "\\x92→В"
    assert completion_label(b"\xd0", b" Paris") == " Paris"  # does not complete it: shown as is


def test_heartbeat_state_waits_for_the_history():
    from lorascope.protocol.frames import Heartbeat, Status

    state = RunState()
    state.apply(RunStart(seq=0, total_steps=10))
    state.apply(Heartbeat(seq=7, state="paused", last_seq=7))  # the trainer paused at seq 7; we have seq 0
    assert state.state == "running" and state.last_seq == 0
    for seq in range(1, 7):
        state.apply(StepMetrics(seq=seq, step=seq, loss=1.0))
    state.apply(Status(seq=7, step=6, state="paused"))
    state.apply(Heartbeat(seq=7, state="paused", last_seq=7))
    assert state.state == "paused" and state.step == 6


def test_calm_run_lists_its_most_volatile_examples():
    """No spikes: the table falls back to the largest gradient norms of the recent frames."""
    from lorascope.protocol.frames import F32Array

    state = RunState()
    for step in range(1, 6):
        state.apply(Volatility(step=step, seq=step, example_ids=[10 * step, 10 * step + 1],
                               losses=F32Array.from_values([1.0, 2.0]),
                               grad_norms=F32Array.from_values([1.0, 1.0 + step]), token_counts=[5, 6]))
    assert not state.spikes
    top = state.top_recent_examples(3)
    assert [(r.step, r.example_id, r.grad_norm) for r in top] == [(5, 51, 6.0), (4, 41, 5.0), (3, 31, 4.0)]
    assert top[0].snippet == "" and top[0].tokens == 6  # a recording from before frames carried snippets

    state.apply(Volatility(step=6, seq=6, example_ids=[60, 61], losses=F32Array.from_values([1.0, 2.0]),
                           grad_norms=F32Array.from_values([9.0, 1.0]), token_counts=[5, 6],
                           snippets=["Какая столица у Франции?", "2 + 2 = 4"]))
    assert (state.top_recent_examples(1)[0].example_id, state.top_recent_examples(1)[0].snippet) == (
        60, "Какая столица у Франции?")
