"""A few real steps on the embedded SmolLM2 with every observer on (slow: loads the real model)."""

from __future__ import annotations

import pytest

from lorascope.protocol.recording import RunReader
from lorascope.trainer.config import TrainConfig
from lorascope.trainer.train import train


@pytest.mark.slow
def test_embedded_defaults_train_and_record_every_observer(tmp_path):
    cfg = TrainConfig(max_steps=2, batch_size=2, max_length=96, weight_delta_every=1, logit_shift_every=2,
                      resources_every=2, checkpoint_every=1, pub="tcp://127.0.0.1:0", control="tcp://127.0.0.1:0",
                      output_dir=str(tmp_path), run_id="emb", progress=False)
    result = train(cfg)
    assert result.reason == "finished" and result.steps == 2
    with RunReader(tmp_path / "emb" / "run.lsr") as reader:
        frames = list(reader)
    start = frames[0]
    assert start.model == "embedded:SmolLM2-135M-Instruct"
    assert len(start.layers) == 30 and start.modules == ["q_proj", "k_proj", "v_proj", "o_proj",
                                                         "gate_proj", "up_proj", "down_proj"]
    assert start.dataset["format"] == "chat" and start.dataset["n_examples"] > 300
    assert any(p.probe_id == "capital-fr" for p in start.probes)
    kinds = [f.kind for f in frames]
    for kind in ("step", "weight_delta", "logit_shift", "volatility", "resources", "checkpoint", "run_end"):
        assert kind in kinds, kind
    steps = [f for f in frames if f.kind == "step"]
    assert all(0 < f.loss < 20 for f in steps)  # a pretrained model: loss far below ln(49152) ≈ 10.8
    shift = [f for f in frames if f.kind == "logit_shift"][-1]
    assert shift.step == 2 and any(p.mean_kl > 0 for p in shift.probes)
    res = next(f for f in frames if f.kind == "resources")
    assert res.peak_bytes > 300_000_000 and res.estimate_total == start.estimate.total
