"""Frames with every field filled, and a small but complete recorded run, for the protocol tests."""

from __future__ import annotations

import math
import socket
from pathlib import Path

from lorascope.protocol.frames import (
    AnchorInfo,
    Checkpoint,
    Continuation,
    EditUpdate,
    F32Array,
    Frame,
    Heartbeat,
    LogitShifts,
    PositionShift,
    ProbeInfo,
    ProbeShift,
    ResourceEstimate,
    Resources,
    RunEnd,
    RunStart,
    Spike,
    Status,
    StepMetrics,
    TokenProb,
    Volatility,
    WeightDeltas,
)
from lorascope.protocol.recording import RunRecorder
from lorascope.protocol.stream import FrameStream


def sample_frames() -> list[Frame]:
    """One frame of every kind, every field set to something other than its default."""
    env = dict(run_id="run-1", seq=7, step=3, wall_time=1700000000.25)
    probe = ProbeInfo("capital", "Столица Франции —", [1, 2, 3], ["Сто", "лица", " \\xd0"], [b"\xd0\xa1", b"x", b" \xd0"])
    tok = TokenProb(42, " Paris", 0.5, 0.75, b" Paris")
    return [
        RunStart(
            **env,
            model="embedded:SmolLM2-135M-Instruct",
            model_info={"model_type": "llama", "n_params": 134515008},
            adapter={"r": 8, "alpha": 16, "target_modules": ["q_proj", "v_proj"]},
            layers=["0", "1"],
            modules=["q_proj", "v_proj"],
            probes=[probe],
            anchors=[AnchorInfo(42, " Paris", b" Paris")],
            dataset={"path": "sample.jsonl", "n_examples": 300},
            device="cuda:0",
            hyperparameters={"lr": 2e-4, "batch_size": 4},
            estimate=ResourceEstimate(1, 2, 3, 4, 5, 15),
            total_steps=50,
            cadences={"weight_delta": 5},
        ),
        StepMetrics(**env, loss=2.5, lr=1e-4, grad_norm=0.75, tokens=512, tokens_per_s=256.0, step_time=2.0, epoch=0.5, aux_loss=0.125),
        WeightDeltas(
            **env,
            absolute=F32Array.from_values([[1.0, 2.0], [3.0, math.nan]]),
            relative=F32Array.from_values([[0.1, 0.2], [0.3, math.nan]]),
            since_last=F32Array.from_values([[0.5, 0.25], [0.125, math.nan]]),
            since_step=2,
        ),
        LogitShifts(
            **env,
            probes=[ProbeShift("capital", [PositionShift(2, 0.25, 1.5, 1.25, [tok], [tok])], mean_kl=0.25)],
            top_k=3,
        ),
        Volatility(
            **env,
            example_ids=[10, 11],
            losses=F32Array.from_values([1.5, 2.5]),
            grad_norms=F32Array.from_values([0.5, 4.0]),
            token_counts=[100, 120],
            dispersion=0.75,
            baseline=0.25,
            spikes=[Spike(11, 2.5, 4.0, 3.5, 120, "Сколько будет 2+2?")],
            sensitivity=F32Array.from_values([-0.25, 0.5]),
        ),
        Resources(**env, peak_bytes=10, current_bytes=9, source="cuda", estimate_total=11),
        EditUpdate(
            **env,
            edit_id="e1",
            state="active",
            probe_id="capital",
            position=2,
            token_id=42,
            token=" Paris",
            target_p=0.6,
            weight=2.0,
            tolerance=0.01,
            budget=20,
            steps_used=4,
            start_step=1,
            p_token=0.4,
            p_token_start=0.1,
            kl_to_target=0.05,
            collateral={"other": 0.002},
            message="rising",
        ),
        Status(**env, state="paused", message="paused from the UI"),
        Heartbeat(**env, state="paused", last_seq=6),
        Checkpoint(**env, path="runs/x/adapter", reason="save"),
        Continuation(**env, probe_id="capital", base_text=" Paris.", tuned_text=" Lyon.", max_new_tokens=8),
        RunEnd(**env, reason="stopped", final_loss=1.25, steps=3, adapter_path="runs/x/adapter", message="bye"),
    ]


def write_sample_run(path: Path, steps: int = 20, run_id: str = "sample-run") -> Path:
    """A complete little run as the trainer would record it: start, steps, observers, an edit, end."""
    recorder = RunRecorder(path)
    stream = FrameStream(run_id, [recorder])
    stream.emit(
        RunStart(
            model="tiny-llama",
            layers=["0", "1"],
            modules=["q_proj", "v_proj"],
            probes=[ProbeInfo("capital", "The capital of France is")],
            total_steps=steps,
            adapter={"r": 4, "alpha": 8},
        )
    )
    stream.emit(Status(step=0, state="running"))
    for step in range(1, steps + 1):
        stream.emit(StepMetrics(step=step, loss=3.0 - step * 0.1, lr=1e-3, tokens=64))
        spikes = [Spike(100 + step, 4.0, 9.0 + step, 2.0 + step / 10, 30, f"example text {step}")] if step % 5 == 0 else []
        stream.emit(
            Volatility(
                step=step,
                example_ids=[2 * step, 2 * step + 1],
                losses=F32Array.from_values([1.0, 2.0]),
                grad_norms=F32Array.from_values([0.5, 1.5]),
                token_counts=[30, 34],
                dispersion=0.5,
                spikes=spikes,
            )
        )
        if step == 4:
            stream.emit(EditUpdate(step=step, edit_id="e1", state="requested", probe_id="capital", position=4, token=" Lyon", target_p=0.6))
        if 5 <= step <= 8:
            state = "achieved" if step == 8 else "active"
            stream.emit(
                EditUpdate(step=step, edit_id="e1", state=state, probe_id="capital", position=4, token=" Lyon", target_p=0.6, p_token=0.1 * step - 0.2)
            )
    stream.emit(RunEnd(step=steps, reason="finished", final_loss=3.0 - steps * 0.1, steps=steps))
    stream.close()
    return path


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def poll_until(feed, done, timeout: float = 10.0, on_idle=None) -> list:
    """Poll a LiveFeed until `done(collected)` holds (or the timeout passes); returns what came."""
    import time

    got: list = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not done(got):
        got.extend(feed.poll(50))
        if on_idle is not None:
            on_idle()
    return got
