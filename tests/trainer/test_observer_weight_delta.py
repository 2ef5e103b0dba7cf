"""WeightDeltaObserver against dense references: ‖s·B·A‖_F and ‖s·(B₁A₁ − B₀A₀)‖_F to 1e-5 relative."""

from __future__ import annotations

import math

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

from lorascope.trainer.observers.weight_delta import WeightDeltaObserver

ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def tiny_peft(use_rslora: bool = False, target_modules=ALL_LINEAR, layers_to_transform=None, r: int = 4):
    torch.manual_seed(0)
    config = LlamaConfig(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
        intermediate_size=128, vocab_size=256, max_position_embeddings=64,
    )
    model = LlamaForCausalLM(config)
    lora = LoraConfig(
        r=r, lora_alpha=8, target_modules=target_modules, lora_dropout=0.0,
        use_rslora=use_rslora, layers_to_transform=layers_to_transform,
    )
    return get_peft_model(model, lora)


def lora_layers(model):
    return {name: m for name, m in model.named_modules() if hasattr(m, "lora_A") and "default" in m.lora_A}


def perturb(model, scale: float):
    """Stand-in for an optimizer step: move every LoRA weight (B starts at zero in peft)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.add_(torch.randn_like(p) * scale)


def dense_delta(module) -> torch.Tensor:
    A = module.lora_A["default"].weight.detach().double()
    B = module.lora_B["default"].weight.detach().double()
    return module.scaling["default"] * (B @ A)


def cell(frame_array, observer, name):
    rows = frame_array.rows()
    layer = name.split(".layers.")[1].split(".")[0]
    return rows[observer.layers.index(layer)][observer.modules.index(name.rsplit(".", 1)[-1])]


@pytest.mark.parametrize("use_rslora", [False, True])
def test_norms_equal_dense_references(use_rslora):
    model = tiny_peft(use_rslora=use_rslora)
    layers = lora_layers(model)
    expected_scaling = 8 / math.sqrt(4) if use_rslora else 8 / 4
    assert all(m.scaling["default"] == pytest.approx(expected_scaling) for m in layers.values())

    perturb(model, 0.05)
    observer = WeightDeltaObserver(model, every=10)
    assert observer.layers == ["0", "1"] and observer.modules == ALL_LINEAR
    before = {name: dense_delta(m) for name, m in layers.items()}
    perturb(model, 0.01)
    frame = observer.observe(10)
    assert frame is not None and frame.step == 10 and frame.since_step == 0
    assert frame.absolute.shape == (2, 7)

    for name, module in layers.items():
        after = dense_delta(module)
        w0 = module.get_base_layer().weight.detach().double()
        absolute = torch.linalg.norm(after).item()
        assert cell(frame.absolute, observer, name) == pytest.approx(absolute, rel=1e-5)
        assert cell(frame.relative, observer, name) == pytest.approx(absolute / torch.linalg.norm(w0).item(), rel=1e-5)
        since = torch.linalg.norm(after - before[name]).item()
        assert cell(frame.since_last, observer, name) == pytest.approx(since, rel=1e-5)


def test_small_change_since_last_keeps_its_digits():
    """A step a million times smaller than the adapter must not vanish in cancellation."""
    model = tiny_peft()
    layers = lora_layers(model)
    perturb(model, 0.1)
    observer = WeightDeltaObserver(model, every=1)
    before = {name: dense_delta(m) for name, m in layers.items()}
    perturb(model, 1e-6)
    frame = observer.observe(1)
    for name, module in layers.items():
        since = torch.linalg.norm(dense_delta(module) - before[name]).item()
        assert since > 0
        assert cell(frame.since_last, observer, name) == pytest.approx(since, rel=1e-5)


def test_since_last_is_relative_to_the_previous_frame_and_cadence_is_kept():
    model = tiny_peft()
    layers = lora_layers(model)
    observer = WeightDeltaObserver(model, every=5)
    assert observer.observe(3) is None
    perturb(model, 0.02)
    first = observer.observe(5)
    snapshot = {name: dense_delta(m) for name, m in layers.items()}
    perturb(model, 0.02)
    assert observer.observe(7) is None
    second = observer.observe(8, force=True)
    assert first.since_step == 0 and second.since_step == 5 and second.step == 8
    for name, module in layers.items():
        since = torch.linalg.norm(dense_delta(module) - snapshot[name]).item()
        assert cell(second.since_last, observer, name) == pytest.approx(since, rel=1e-5)
    # at the first frame, peft's B was zero at construction: since-last equals the absolute norm
    assert first.since_last.values() == pytest.approx(first.absolute.values(), rel=1e-5)


def test_cells_not_adapted_are_nan():
    model = tiny_peft(target_modules=["q_proj", "v_proj", "down_proj"], layers_to_transform=[1])
    observer = WeightDeltaObserver(model)
    perturb(model, 0.05)
    frame = observer.observe(0)
    assert observer.layers == ["1"] and observer.modules == ["q_proj", "v_proj", "down_proj"]
    assert all(v > 0 for v in frame.absolute.values())

    model = tiny_peft(target_modules=["q_proj", "v_proj"], layers_to_transform=None)
    # drop one module's adapter from layer 0 to make a hole in the grid
    del model.base_model.model.model.layers[0].self_attn.v_proj.lora_A["default"]
    observer = WeightDeltaObserver(model)
    perturb(model, 0.05)
    rows = observer.observe(0).absolute.rows()
    assert math.isnan(rows[0][1]) and not math.isnan(rows[0][0]) and not math.isnan(rows[1][1])


def test_one_host_transfer_per_frame(monkeypatch):
    """Norms are stacked on the device and copied once, not one .item() per module."""
    model = tiny_peft()
    observer = WeightDeltaObserver(model)
    perturb(model, 0.05)
    calls = {"item": 0, "cpu": 0}
    real_item, real_cpu = torch.Tensor.item, torch.Tensor.cpu

    def counting_item(self):
        calls["item"] += 1
        return real_item(self)

    def counting_cpu(self, *args, **kwargs):
        calls["cpu"] += 1
        return real_cpu(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "item", counting_item)
    monkeypatch.setattr(torch.Tensor, "cpu", counting_cpu)
    observer.observe(0)
    assert calls == {"item": 0, "cpu": 1}
