"""Two CPU processes (torchrun, as `accelerate launch --multi_gpu` does; `accelerate launch --cpu` starts one
process unless MPI is there): both ranks train, only the main one records and publishes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from lorascope.protocol.recording import RunReader


def test_two_cpu_processes_train_and_only_the_main_one_records(tiny_model_dir, tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
               "-m", "lorascope.protocol.cli", "train", "--model", str(tiny_model_dir), "--max-steps", "4",
               "--pub", "tcp://127.0.0.1:0", "--control", "tcp://127.0.0.1:0", "--output-dir", str(tmp_path),
               "--run-id", "ddp", "--max-length", "64", "--batch-size", "2", "--checkpoint-every", "2", "--no-progress"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    with RunReader(tmp_path / "ddp" / "run.lsr") as reader:
        frames = list(reader)
    assert frames[0].hyperparameters["world_size"] == 2
    assert [f.step for f in frames if f.kind == "step"] == [1, 2, 3, 4]  # one publisher: no duplicate frames
    assert frames[-1].kind == "run_end" and frames[-1].reason == "finished"
    vol = [f for f in frames if f.kind == "volatility"]
    assert len(vol) == 4 and all(len(set(f.example_ids)) == 4 for f in vol)  # 2 per rank, gathered from both
    assert (tmp_path / "ddp" / "adapter" / "adapter_model.safetensors").is_file()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
