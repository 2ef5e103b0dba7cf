"""A deterministic synthetic recording, written through the real RunRecorder/FrameStream.

Shaped like a run of the embedded SmolLM2 (30 layers × 7 modules, realistic
probe tokens including a partial UTF-8 one, volatility spikes with English and
Russian snippets, an edit that is achieved and one that fails, pause/resume,
a probe continuation, checkpoints). Wall times are fixed, never the clock, so
snapshots of a UI fed from it are reproducible.

    python tests/tui/synthetic_run.py OUT.lsr [--steps N]
"""

from __future__ import annotations

import math
import random
import sys
from pathlib import Path

from lorascope.protocol.frames import (
    AnchorInfo,
    Checkpoint,
    Continuation,
    EditUpdate,
    F32Array,
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

RUN_ID = "synthetic-0001"
MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
T0 = 1_767_225_600.0  # 2026-01-01 00:00 UTC: a fixed wall clock
STEP_SECONDS = 2.0

# (probe id, [(token id, token bytes)]): byte-level BPE tokens as SmolLM2 would split them.
PROBES = [
    ("capital_fr", [(504, b"The"), (3575, b" capital"), (282, b" of"), (4649, b" France"), (314, b" is")]),
    # Split as SmolLM2 splits it: "С" and "Ф" are cut in half by the token boundaries.
    ("capital_ru", [(4091, b"\xd0"), (30221, "Столица".encode()[1:]), (4092, b" \xd0"),
                    (26406, "Франции".encode()[1:]), (2542, " —".encode())]),
    ("arith", [(34, b"2"), (1232, b" +"), (216, b" 3"), (2696, b" ="), (216, b" 5"), (30, b".")]),
]
# Candidate next tokens per probe: (id, bytes, base logit, tuned drift per step).
CANDIDATES = {
    "capital_fr": [(7042, b" Paris", 3.0, 0.010), (20805, b" Lyon", 0.8, 0.020), (253, b" a", 1.5, -0.01),
                   (260, b" the", 1.2, -0.005), (3848, b" located", 0.9, 0.0), (8771, b" London", 0.2, 0.004)],
    # SmolLM2's top token after "Столица Франции —" is half of a Cyrillic letter: b" \xd0".
    "capital_ru": [(4091, b" \xd0", 2.4, 0.004), (19419, " Париж".encode(), 1.9, 0.02), (2001, b" \xd1", 0.7, 0.0),
                   (216, b" ", 0.5, -0.01), (30, b".", 0.1, 0.0)],
    "arith": [(216, b" 5", 2.8, 0.01), (260, b" the", 0.9, -0.01), (1232, b" +", 0.3, 0.0),
              (34, b"2", 0.2, 0.0), (198, b"\n", 0.6, 0.01)],
}
ANCHORS = [(7042, b" Paris"), (20805, b" Lyon")]
SNIPPETS = [
    "What is the capital of France? The capital of France is Paris.",
    "Какая столица у Франции? Столица Франции — Париж.",
    "Compute 17 + 25. Answer: 42.",
    "Вычисли 17 + 25. Ответ: 42.",
    "If all cats are animals and Tom is a cat, is Tom an animal? Yes.",
    "Translate 'good morning' into French: bonjour.",
]


def _softmax(logits: list[float]) -> list[float]:
    top = max(logits)
    exps = [math.exp(x - top) for x in logits]
    total = sum(exps) + 2.0  # the rest of the vocabulary holds some mass
    return [e / total for e in exps]


def _run_start(layers: int, total_steps: int, cadences: dict[str, int]) -> RunStart:
    probes = []
    for probe_id, tokens in PROBES:
        text = b"".join(b for _, b in tokens).decode("utf-8", errors="replace")
        probes.append(ProbeInfo(probe_id, text, [t for t, _ in tokens],
                                [b.decode("utf-8", errors="replace") for _, b in tokens], [b for _, b in tokens]))
    return RunStart(
        step=0,
        model="embedded:SmolLM2-135M-Instruct",
        model_info={"model_type": "llama", "n_params": 134_515_008, "vocab_size": 49152, "dtype": "float32"},
        adapter={"r": 8, "alpha": 16, "dropout": 0.05, "rslora": False, "scaling": 2.0, "target_modules": MODULES},
        layers=[str(i) for i in range(layers)],
        modules=list(MODULES),
        probes=probes,
        anchors=[AnchorInfo(t, b.decode(), b) for t, b in ANCHORS],
        dataset={"path": "sample/alpaca_en_ru.jsonl", "format": "alpaca", "n_examples": 320, "n_truncated": 3},
        device="cpu",
        hyperparameters={"lr": 2e-4, "batch_size": 4, "max_length": 128, "seed": 0},
        estimate=ResourceEstimate(weights=538_000_000, adapter=19_500_000, gradients=19_500_000,
                                  optimizer=39_000_000, activations=160_000_000, total=776_000_000),
        total_steps=total_steps,
        cadences=cadences,
    )


def _deltas(step: int, layers: int, prev_step: int, rng: random.Random, seed: int = 0) -> WeightDeltas:
    absolute, relative, since = [], [], []
    growth = math.sqrt(step)
    for layer in range(layers):
        for m, module in enumerate(MODULES):
            if layer >= layers - 2 and module == "k_proj":  # not adapted: NaN
                absolute.append(math.nan), relative.append(math.nan), since.append(math.nan)
                continue
            base = 0.02 * growth * (1.0 + 0.6 * math.sin(layer / 4.0 + m)) * (1.0 + layer / layers) * (1.0 + 0.3 * seed * m / 7)
            absolute.append(base)
            relative.append(base / (8.0 + m))
            since.append(0.02 * (growth - math.sqrt(prev_step)) * (1.0 + 0.3 * rng.random()))
    shape = (layers, len(MODULES))
    return WeightDeltas(step=step, absolute=F32Array.from_values(absolute, shape),
                        relative=F32Array.from_values(relative, shape),
                        since_last=F32Array.from_values(since, shape), since_step=prev_step)


def _shifts(step: int) -> LogitShifts:
    probes = []
    for probe_id, tokens in PROBES:
        positions = []
        for pos in range(len(tokens)):
            cands = CANDIDATES[probe_id]
            # Earlier positions shift less; the last one carries the answer.
            weight = (pos + 1) / len(tokens)
            base = _softmax([c[2] - 0.3 * pos for c in cands])
            tuned = _softmax([c[2] - 0.3 * pos + c[3] * min(step, 120) * weight * 4 for c in cands])
            kl = sum(b * math.log(b / t) for b, t in zip(base, tuned))
            top = [TokenProb(c[0], c[1].decode("utf-8", errors="replace"), b, t, c[1])
                   for c, b, t in zip(cands, base, tuned)][:5]
            anchors = [TokenProb(t, b.decode(), 0.01 * (i + 1), 0.01 * (i + 1) + 0.0004 * step, b)
                       for i, (t, b) in enumerate(ANCHORS)]
            ent_b = -sum(p * math.log(p) for p in base)
            ent_t = -sum(p * math.log(p) for p in tuned)
            positions.append(PositionShift(pos, kl, ent_b, ent_t, top, anchors))
        mean_kl = sum(p.kl for p in positions) / len(positions)
        probes.append(ProbeShift(probe_id, positions, mean_kl))
    return LogitShifts(step=step, probes=probes, top_k=5)


def _volatility(step: int, batch: int, n_examples: int, rng: random.Random, history: list[float]) -> Volatility:
    ids = [(step * batch + i) % n_examples for i in range(batch)]
    losses = [2.0 * math.exp(-step / 40) + 0.6 + 0.3 * rng.random() for _ in ids]
    norms = [0.5 + 0.3 * rng.random() for _ in ids]
    if step % 7 == 3:  # a jolting example every few steps
        norms[1] *= 4.0
        losses[1] += 1.5
    mean = sum(norms) / len(norms)
    dispersion = math.sqrt(sum((n - mean) ** 2 for n in norms) / len(norms)) / mean
    history.append(dispersion)
    window = history[-50:]
    baseline = sum(window) / len(window)
    spikes = []
    if step % 7 == 3:
        eid = ids[1]
        spikes.append(Spike(eid, losses[1], norms[1], 3.0 + (step % 5) * 0.7, 40 + eid % 60, SNIPPETS[eid % len(SNIPPETS)]))
    return Volatility(step=step, example_ids=ids, losses=F32Array.from_values(losses), grad_norms=F32Array.from_values(norms),
                      token_counts=[40 + i % 60 for i in ids], dispersion=dispersion, baseline=baseline, spikes=spikes)


def _edits(step: int) -> list[EditUpdate]:
    """Edit e1 (Lyon to 0.6) is requested at 20, active, achieved at 36; e2 fails after its budget."""
    out = []
    common = dict(probe_id="capital_fr", position=4, token_id=20805, token=" Lyon", target_p=0.6,
                  weight=1.0, tolerance=0.02, budget=30, start_step=20, p_token_start=0.06)
    if 20 <= step <= 36:
        state = "requested" if step == 20 else "achieved" if step == 36 else "active"
        p = 0.06 + (0.6 - 0.06) * (step - 20) / 16
        out.append(EditUpdate(step=step, edit_id="e1", state=state, steps_used=step - 20, p_token=p,
                              kl_to_target=0.5 * (1 - (step - 20) / 16) + 0.01,
                              collateral={"capital_ru": 0.002 * (step - 20), "arith": 0.0005 * (step - 20)}, **common))
    if 30 <= step <= 42:
        state = "requested" if step == 30 else "failed" if step == 42 else "active"
        out.append(EditUpdate(step=step, edit_id="e2", state=state, probe_id="arith", position=4, token_id=260,
                              token=" the", target_p=0.9, weight=0.5, tolerance=0.02, budget=12,
                              steps_used=step - 30, start_step=30, p_token=0.1 + 0.01 * (step - 30), p_token_start=0.1,
                              kl_to_target=1.2 - 0.02 * (step - 30), collateral={"capital_fr": 0.001 * (step - 30)},
                              message="budget of 12 steps spent" if state == "failed" else ""))
    return out


def synthetic_frames(steps: int = 60, *, layers: int = 30, seed: int = 0, deltas_every: int = 5,
                     shifts_every: int = 5, volatility_every: int = 1, batch: int = 4, with_edits: bool = True,
                     loss_offset: float = 0.0):
    """The frames of a synthetic run, in order, with fixed wall times (seq/run_id left to the stream)."""
    rng = random.Random(seed)
    cadences = {"weight_delta": deltas_every, "logit_shift": shifts_every, "volatility": volatility_every, "resources": 10}

    def at(frame, step):
        frame.wall_time = T0 + step * STEP_SECONDS
        return frame

    yield at(_run_start(layers, steps, cadences), 0)
    yield at(Status(step=0, state="running"), 0)
    yield at(_shifts(0), 0)
    prev_delta, dispersions, rss, loss = 0, [], 900_000_000, 0.0
    for step in range(1, steps + 1):
        loss = 2.2 * math.exp(-step / 25) + 0.7 + 0.15 * math.sin(step / 3) + 0.05 * rng.random() + loss_offset
        lr = 2e-4 * min(1.0, step / 10) * (0.5 + 0.5 * math.cos(math.pi * step / steps))
        yield at(StepMetrics(step=step, loss=loss, lr=lr, grad_norm=0.8 + 0.1 * rng.random(), tokens=480,
                             tokens_per_s=240.0, step_time=STEP_SECONDS, epoch=step / 80,
                             aux_loss=0.3 * math.exp(-(step - 20) / 6) if with_edits and 20 < step <= 36 else 0.0), step)
        if step % volatility_every == 0:
            yield at(_volatility(step, batch, 320, rng, dispersions), step)
        if step % deltas_every == 0:
            yield at(_deltas(step, layers, prev_delta, rng, seed), step)
            prev_delta = step
        if step % shifts_every == 0:
            yield at(_shifts(step), step)
        if step % 10 == 0:
            rss = min(rss + 3_000_000, 1_100_000_000)
            yield at(Resources(step=step, peak_bytes=rss, current_bytes=rss - 50_000_000, source="rss",
                               estimate_total=776_000_000), step)
        if with_edits:
            for edit in _edits(step):
                yield at(edit, step)
            if step == 24:
                yield at(Status(step=step, state="paused", message="paused from the UI"), step)
            if step == 26:
                yield at(Status(step=step, state="running"), step)
            if step == 25:
                yield at(Continuation(step=step, probe_id="capital_fr",
                                      base_text=" Paris. It is known for the Eiffel Tower.",
                                      tuned_text=" Lyon, a city on the Rhône.", max_new_tokens=12), step)
        if step % 50 == 0:
            yield at(Checkpoint(step=step, path=f"runs/{RUN_ID}/checkpoint-{step}", reason="periodic"), step)
    yield at(Status(step=steps, state="finished"), steps)
    yield at(RunEnd(step=steps, reason="finished", final_loss=loss, steps=steps, adapter_path=f"runs/{RUN_ID}/adapter"),
             steps)


def run_id_for(seed: int) -> str:
    return RUN_ID if seed == 0 else f"synthetic-{seed:04d}"


def write_synthetic_run(path: str | Path, steps: int = 60, *, seed: int = 0, **options) -> Path:
    """Write `steps` optimizer steps of a synthetic run to `path` (see `synthetic_frames`) and return it."""
    recorder = RunRecorder(path)
    stream = FrameStream(run_id_for(seed), sinks=[recorder])
    for frame in synthetic_frames(steps, seed=seed, **options):
        stream.emit(frame)
    stream.close()
    recorder.close()
    return Path(path)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--steps", type=int, default=60)
    ns = parser.parse_args()
    print(write_synthetic_run(ns.out, ns.steps))
    sys.exit(0)
