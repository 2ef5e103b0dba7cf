"""The model loader: local directories, clear errors, automatic target modules, the estimate."""

from __future__ import annotations

import pytest

from lorascope.protocol.errors import UserError
from lorascope.trainer.models import find_target_modules, load_model, load_model_config
from lorascope.trainer.resources import ResourceObserver, estimate_resources


def test_local_directory_loads_with_pad_token(tiny_model_dir):
    model, tokenizer, description = load_model(str(tiny_model_dir), device="cpu")
    assert description == str(tiny_model_dir)
    assert tokenizer.pad_token_id is not None
    assert model.config.num_hidden_layers == 2


def test_target_modules_are_the_block_projections_never_the_head(tiny_model_dir):
    model, _, _ = load_model(str(tiny_model_dir), device="cpu")
    assert find_target_modules(model) == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def test_gpt2_style_conv1d_projections_are_found():
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=100, n_positions=16))
    assert find_target_modules(model) == ["c_attn", "c_proj", "c_fc"]


def test_missing_model_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError) as err:
        load_model("nobody/no-such-model-anywhere", device="cpu")
    message = str(err.value)
    assert "nobody/no-such-model-anywhere" in message and "cache" in message and "nothing is downloaded" in message
    with pytest.raises(UserError, match="no config.json"):
        load_model(str(tmp_path), device="cpu")


def test_estimate_counts_the_adapter_exactly(tiny_model_dir):
    config = load_model_config(str(tiny_model_dir))
    est = estimate_resources(config, rank=4, batch_size=2, max_length=16)
    # 2 layers: q,k,v,o are 64->64; gate, up 64->128; down 128->64: r*(in+out) each
    per_layer = 4 * (4 * (64 + 64) + 2 * (64 + 128) + (128 + 64))
    assert est.adapter == 2 * per_layer * 4
    assert est.optimizer == 2 * est.adapter and est.gradients == est.adapter
    assert est.total == est.weights + est.adapter + est.gradients + est.optimizer + est.activations
    assert est.activations > 3 * 2 * 16 * config.vocab_size * 4 - 1  # logits at least


def test_resource_observer_reports_process_peak():
    frame = ResourceObserver("cpu", every=5, estimate_total=123).observe(5)
    assert frame.source == "rss" and frame.peak_bytes > 10_000_000 and frame.estimate_total == 123
    assert ResourceObserver("cpu", every=5).observe(3) is None
