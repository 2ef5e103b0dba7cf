"""End-to-end `lorascope train` speed on the embedded model: plain loop vs all observers at default cadences.

Not collected by pytest. Run: .venv/bin/python tests/bench/bench_core_train.py [--steps 12]

Runs the real trainer (train()) twice in this process on the embedded model,
batch 4 × 128 tokens, r=8 on every projection: once with every observer off, once
with the defaults (weight delta and logit shift every 5 steps, volatility every
step, resources every 10). Reports the median StepMetrics.step_time (the training
part of a step) and the wall time per step from the recording (training + observers
+ recording + publishing), and their ratio. Also times a model load from the
dequantized cache and straight from the GGUF. The machine is shared and noisy:
read ratios, not absolute seconds, and check `uptime` beside them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from lorascope.protocol.recording import RunReader  # noqa: E402
from lorascope.trainer.cli_train import _quiet_libraries  # noqa: E402
from lorascope.trainer.config import TrainConfig  # noqa: E402
from lorascope.trainer.train import train  # noqa: E402


def run(out: str, run_id: str, steps: int, observers: bool) -> tuple[float, float]:
    off = {} if observers else dict(weight_delta_every=0, logit_shift_every=0, volatility_every=0, resources_every=0)
    cfg = TrainConfig(max_steps=steps, checkpoint_every=0, pub="tcp://127.0.0.1:0", control="tcp://127.0.0.1:0",
                      output_dir=out, run_id=run_id, progress=False, **off)
    train(cfg)
    with RunReader(os.path.join(out, run_id, "run.lsr")) as reader:
        frames = [f for f in reader if f.kind == "step"]
    step_times = [f.step_time for f in frames[1:]]  # the first step warms up
    walls = [b.wall_time - a.wall_time for a, b in zip(frames[1:], frames[2:])]
    return statistics.median(step_times), statistics.median(walls)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=12)
    args = parser.parse_args()
    _quiet_libraries()
    from lorascope.trainer.models import load_model

    t0 = time.perf_counter()
    load_model(None, device="cpu")
    cached = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as out:
        os.environ["LORASCOPE_NO_CACHE"] = "1"  # straight from the GGUF
        t0 = time.perf_counter()
        load_model(None, device="cpu")
        gguf = time.perf_counter() - t0
        del os.environ["LORASCOPE_NO_CACHE"]
        plain_step, plain_wall = run(out, "plain", args.steps, observers=False)
        full_step, full_wall = run(out, "full", args.steps, observers=True)
    print(f"load: cached {cached:.1f} s, from GGUF {gguf:.1f} s ({gguf / cached:.0f}x)")
    print(f"plain loop:    step_time {plain_step:.2f} s, wall per step {plain_wall:.2f} s")
    print(f"all observers: step_time {full_step:.2f} s, wall per step {full_wall:.2f} s "
          f"({full_wall / plain_wall:.2f}x the plain wall time per step)")
    print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
