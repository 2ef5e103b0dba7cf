"""Cost of each observer as a fraction of a plain LoRA training step, on the embedded model.

Not collected by pytest. Run on a shared machine (see --clock below):

    .venv/bin/python tests/bench/bench_observers.py --rounds 4 --threads 1 --clock cpu

Measured 2026-11-25 on the 2-core box shared with 4 other jobs (CPU clock, 1 thread):
plain step 4.85 s; volatility +0.3 % per step (paired ratios 0.97–1.05: within noise; the
hook arithmetic alone is ~0.1 s = 2 %); weight delta 0.7 % per call, 0.1 % amortised
at every 5 steps; logit shift (7 default probes, 153 tokens) 18 % per call, 3.6 % amortised.

Setting (as in the design brief): SmolLM2-135M-Instruct, batch 4 × 128 tokens,
LoRA r=8 on every linear projection, AdamW. The machine is shared and noisy, so
the variants are interleaved round by round in one process and compared by
their medians:

- plain step: forward, per-example loss, backward, optimizer step;
- volatility: the same step inside `VolatilityObserver.capture` + record + observe
  (its default cadence is every step, so per call = amortised);
- weight delta / logit shift: one `observe()` call each, timed on its own; amortised
  at the trainer's default cadence (every 5 steps).

`--clock cpu --threads 1` times CPU seconds of the one computing thread instead of
wall seconds: on a machine other jobs are loading, waiting for a core then does not
count, so the ratios hold still (the wall-clock ratios of a loaded 2-core box swing
by ±50 %).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from peft import LoraConfig, get_peft_model  # noqa: E402

from lorascope.trainer.models import find_target_modules, load_model  # noqa: E402
from lorascope.trainer.observers.logit_shift import LogitShiftObserver  # noqa: E402
from lorascope.trainer.observers.volatility import VolatilityObserver, per_example_loss  # noqa: E402
from lorascope.trainer.observers.weight_delta import WeightDeltaObserver  # noqa: E402
from lorascope.trainer.probes import ProbeSet  # noqa: E402

BATCH, LENGTH, RANK = 4, 128, 8
CADENCE = {"volatility": 1, "weight_delta": 5, "logit_shift": 5}  # the trainer's defaults (trainer/config.py)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall seconds, or CPU seconds of this process (thread with --threads 1)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.clock == "wall":
        clock = time.perf_counter
    else:
        clock = time.thread_time if torch.get_num_threads() == 1 else time.process_time

    torch.manual_seed(0)
    model, tokenizer, name = load_model(None, device="cpu")
    targets = find_target_modules(model)
    model = get_peft_model(model, LoraConfig(r=RANK, lora_alpha=16, lora_dropout=0.05, target_modules=targets))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    input_ids = torch.randint(100, len(tokenizer), (BATCH, LENGTH))
    labels = input_ids.clone()

    probes = ProbeSet.default(tokenizer)
    volatility = VolatilityObserver(model, every=1)
    weights = WeightDeltaObserver(model, every=1)
    logits_obs = LogitShiftObserver(model, tokenizer, probes, every=1)

    def step(observed: bool, n: int) -> float:
        t0 = clock()
        if observed:
            with volatility.capture(loss_weight=1 / BATCH):
                losses, counts = per_example_loss(model(input_ids=input_ids).logits, labels)
                losses.mean().backward()
            volatility.record(list(range(BATCH)), losses.detach(), counts)
        else:
            losses, counts = per_example_loss(model(input_ids=input_ids).logits, labels)
            losses.mean().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if observed:
            volatility.observe(n)
        float(losses.detach().mean())  # the loop's one host sync per step
        return clock() - t0

    def timed(fn) -> float:
        t0 = clock()
        fn()
        return clock() - t0

    print(f"{name}: {sum(p.numel() for p in params)} LoRA parameters (r={RANK}, {len(targets)} modules per layer), "
          f"batch {BATCH}x{LENGTH}, {torch.get_num_threads()} threads, {len(probes)} probes, {args.clock} clock", file=sys.stderr)
    step(False, 0)  # warm-up: allocator, AdamW state
    step(True, 1)
    times = {"plain": [], "volatility": [], "weight_delta": [], "logit_shift": []}
    for r in range(args.rounds):
        order = ["plain", "volatility"] if r % 2 == 0 else ["volatility", "plain"]
        for variant in order:
            times[variant].append(step(variant == "volatility", r + 2))
        times["weight_delta"].append(timed(lambda: weights.observe(r, force=True)))
        times["logit_shift"].append(timed(lambda: logits_obs.observe(r, force=True)))
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{k} {v[-1]:.3f}s" for k, v in times.items()), file=sys.stderr)

    plain = statistics.median(times["plain"])
    print(f"\nplain step (median of {args.rounds}, {args.clock} clock, {torch.get_num_threads()} threads): {plain:.3f} s")
    print(f"{'observer':<14} {'cadence':>8} {'per call':>10} {'per call/step':>14} {'amortised/step':>15}")
    for key in ("volatility", "weight_delta", "logit_shift"):
        if key == "volatility":
            per_call = statistics.median(times["volatility"]) - plain
        else:
            per_call = statistics.median(times[key])
        print(f"{key:<14} {CADENCE[key]:>8} {per_call:>9.3f}s {per_call / plain:>13.1%} {per_call / plain / CADENCE[key]:>14.1%}")
    # Paired per round: the two steps of a round ran back to back, so their ratio is less noisy.
    paired = [v / p for v, p in zip(times["volatility"], times["plain"])]
    print(f"volatility, paired per round: median step ratio {statistics.median(paired):.3f} "
          f"(min {min(paired):.3f}, max {max(paired):.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
