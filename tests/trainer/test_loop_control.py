"""A real `lorascope train` process on the tiny model: its recording, and pause/step/resume/save/stop over a real socket."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lorascope.protocol.control import ControlClient, ControlError
from lorascope.protocol.recording import RunReader

TIMEOUT = 120.0


def start_trainer(model_dir: Path, out: Path, run_id: str, *extra: str) -> subprocess.Popen:
    """`lorascope train` on the tiny model with free ports; the caller reads endpoints.json."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")  # tiny matrices: one thread is faster on a busy box
    command = [sys.executable, "-m", "lorascope.protocol.cli", "train", "--model", str(model_dir),
               "--pub", "tcp://127.0.0.1:0", "--control", "tcp://127.0.0.1:0", "--output-dir", str(out),
               "--run-id", run_id, "--max-length", "64", "--batch-size", "2", "--no-progress", *extra]
    log = open(out / f"{run_id}.log", "wb")
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)


def wait_for(predicate, what: str, proc: subprocess.Popen | None = None, timeout: float = TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"trainer exited with {proc.returncode} while waiting for {what}")
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def endpoints(run_dir: Path, proc: subprocess.Popen) -> dict:
    path = run_dir / "endpoints.json"
    wait_for(path.is_file, "endpoints.json", proc)
    return json.loads(path.read_text())


def frames_of(run_dir: Path) -> list:
    with RunReader(run_dir / "run.lsr") as reader:
        return list(reader)


def stop_process(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_pause_step_resume_save_stop_and_the_recording(tiny_model_dir, tmp_path):
    proc = start_trainer(tiny_model_dir, tmp_path, "ctl", "--max-steps", "500", "--weight-delta-every", "2",
                         "--logit-shift-every", "2", "--resources-every", "2", "--checkpoint-every", "0",
                         "--loss-sensitivity")
    try:
        ends = endpoints(tmp_path / "ctl", proc)
        with ControlClient(ends["control"]) as client:
            wait_for(lambda: client.request("status")["step"] >= 2, "two steps", proc)
            paused = client.request("pause")
            assert paused["state"] == "paused"
            at = paused["step"]
            time.sleep(1.0)
            assert client.request("status")["step"] == at  # paused means no steps
            assert client.request("step", n=2)["steps"] == 2
            wait_for(lambda: (lambda s: s["state"] == "paused" and s["step"] == at + 2)(client.request("status")),
                     "two more steps, then paused again", proc)

            with pytest.raises(ControlError, match="'n' must be a positive integer"):
                client.request("step", n=0)
            with pytest.raises(ControlError, match="probe_id 'nope' is not a probe"):
                client.request("continue", probe_id="nope")
            with pytest.raises(ControlError, match="unknown command"):
                client.request("explode")
            with pytest.raises(ControlError):
                client.request("edit", probe_id="nope", position=0, token=" Paris", q=0.5)
            probe_id = frames_of(tmp_path / "ctl")[0].probes[0].probe_id
            edit = client.request("edit", probe_id=probe_id, token=" the", q=0.5, budget=100, timeout=30)
            assert edit["state"] == "active" and edit["edit_id"]
            assert client.request("cancel_edit", edit_id=edit["edit_id"])["state"] == "cancelled"
            with pytest.raises(ControlError, match="already cancelled"):
                client.request("cancel_edit", edit_id=edit["edit_id"])
            cont = client.request("continue", probe_id=probe_id, max_new_tokens=3, timeout=30)
            assert isinstance(cont["base_text"], str) and isinstance(cont["tuned_text"], str)
            saved = client.request("save", timeout=30)
            assert (Path(saved["path"]) / "adapter_config.json").is_file()
            assert client.request("status")["step"] == at + 2  # none of that moved training

            assert client.request("resume")["state"] == "running"
            wait_for(lambda: client.request("status")["step"] >= at + 4, "steps after resume", proc)
            assert client.request("stop")["stopping"] is True
        assert proc.wait(timeout=TIMEOUT) == 0
    finally:
        stop_process(proc)

    frames = frames_of(tmp_path / "ctl")
    kinds = {f.kind for f in frames}
    assert {"run_start", "step", "weight_delta", "logit_shift", "volatility", "resources", "status",
            "checkpoint", "continuation", "edit", "run_end"} <= kinds
    assert [f.seq for f in frames] == list(range(len(frames)))  # no gaps
    assert frames[0].kind == "run_start" and frames[-1].kind == "run_end"
    start = frames[0]
    assert start.layers == ["0", "1"] and start.modules[0] == "q_proj" and start.total_steps == 500
    assert start.hyperparameters["rank"] == 8 and start.estimate.total > 0 and start.probes
    states = [f.state for f in frames if f.kind == "status"]
    assert states[:5] == ["running", "paused", "running", "paused", "running"]
    assert states[-1] == "stopped"
    assert frames[-1].reason == "stopped" and frames[-1].steps >= at + 4
    steps = [f.step for f in frames if f.kind == "step"]
    assert steps == list(range(1, len(steps) + 1))
    assert {f.reason for f in frames if f.kind == "checkpoint"} == {"save", "stop"}
    assert [f.state for f in frames if f.kind == "edit"] == ["requested", "active", "cancelled"]
    assert all(f.loss > 0 and f.tokens > 0 and f.step_time > 0 for f in frames if f.kind == "step")
    vol = next(f for f in frames if f.kind == "volatility")
    assert len(vol.example_ids) == 2 and len(vol.grad_norms.values()) == 2
    assert vol.sensitivity is not None and len(vol.sensitivity.values()) == 2
    assert (tmp_path / "ctl" / "adapter" / "adapter_model.safetensors").is_file()


def test_sigkill_leaves_a_readable_recording_and_a_loadable_checkpoint_then_resume_and_ctrl_c(tiny_model_dir, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from lorascope.trainer.checkpoint import find_checkpoint, list_checkpoints

    run_dir = tmp_path / "kill"
    proc = start_trainer(tiny_model_dir, tmp_path, "kill", "--max-steps", "500", "--checkpoint-every", "2")
    try:
        wait_for(lambda: len(list_checkpoints(run_dir)) >= 1 and list_checkpoints(run_dir)[-1].name >= "checkpoint-000004",
                 "a checkpoint at step 4", proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        stop_process(proc)
    frames = frames_of(run_dir)
    assert frames[0].kind == "run_start" and any(f.kind == "step" for f in frames)
    assert all(f.kind != "run_end" for f in frames)
    last = find_checkpoint(run_dir)
    assert last.name.startswith("checkpoint-") and not any(p.name.startswith(".") for p in [last])
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    reloaded = PeftModel.from_pretrained(base, last)
    b = [m for n, m in reloaded.named_modules() if n.endswith("q_proj.lora_B.default")][0]
    assert b.weight.abs().sum() > 0  # trained weights, not the zero init
    step = json.loads((last / "trainer_state.json").read_text())["step"]

    # resume from the killed run; Ctrl-C after a step saves and ends cleanly
    proc = start_trainer(tiny_model_dir, tmp_path, "resumed", "--resume", str(run_dir), "--max-steps", "500")
    try:
        wait_for(lambda: (tmp_path / "resumed" / "run.lsr").is_file() and
                 sum(f.kind == "step" for f in frames_of(tmp_path / "resumed")) >= 1, "a resumed step", proc)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=TIMEOUT) == 130
    finally:
        stop_process(proc)
    frames = frames_of(tmp_path / "resumed")
    assert frames[0].step == step and frames[0].hyperparameters["resumed_from"] == str(last)
    assert next(f for f in frames if f.kind == "step").step == step + 1
    assert frames[-1].kind == "run_end" and frames[-1].reason == "interrupted"
    assert (tmp_path / "resumed" / "adapter" / "adapter_model.safetensors").is_file()
    del torch
