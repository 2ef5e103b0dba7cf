"""Checkpoints: PEFT format that PeftModel.from_pretrained reloads to identical logits; atomic; resumable state."""

from __future__ import annotations

import os

import pytest
import torch

from lorascope.protocol.errors import UserError
from lorascope.trainer.checkpoint import find_checkpoint, list_checkpoints, load_checkpoint, save_checkpoint


def _trained_peft_model(model_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"]))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0 / (1 + s))
    ids = torch.randint(0, 1000, (2, 12))
    for _ in range(3):
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
    return model.eval(), optimizer, scheduler, ids


def test_saved_adapter_reloads_with_identical_logits(tiny_model_dir, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model, optimizer, scheduler, ids = _trained_peft_model(tiny_model_dir)
    path = save_checkpoint(tmp_path, model, step=3, optimizer=optimizer, scheduler=scheduler, state={"epoch": 0.5})
    assert {"adapter_config.json", "adapter_model.safetensors", "optimizer.pt", "scheduler.pt",
            "trainer_state.json"} <= set(os.listdir(path))
    reloaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), path).eval()
    with torch.no_grad():
        expected = model(input_ids=ids).logits
        assert torch.equal(reloaded(input_ids=ids).logits, expected)
        base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()(input_ids=ids).logits
    assert not torch.allclose(base, expected)  # the adapter really changes the model

    # the resume path: a fresh adapter, optimizer and scheduler take the saved state
    fresh, fresh_opt, fresh_sched, _ = _fresh(tiny_model_dir)
    state = load_checkpoint(tmp_path, fresh, optimizer=fresh_opt, scheduler=fresh_sched)
    assert state["step"] == 3 and state["epoch"] == 0.5 and state["path"] == str(path)
    with torch.no_grad():
        assert torch.equal(fresh.eval()(input_ids=ids).logits, expected)
    assert fresh_sched.last_epoch == scheduler.last_epoch
    assert fresh_opt.state_dict()["state"].keys() == optimizer.state_dict()["state"].keys()


def _fresh(model_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"]))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    return model, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0 / (1 + s)), None


def test_only_complete_checkpoints_count_and_old_ones_go(tiny_model_dir, tmp_path):
    model, optimizer, scheduler, _ = _trained_peft_model(tiny_model_dir)
    save_checkpoint(tmp_path, model, step=2)
    save_checkpoint(tmp_path, model, step=4)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-000004"]  # keep=1
    # what a kill mid-write leaves: a hidden temp folder and a folder without its state file
    (tmp_path / ".checkpoint-000006.tmp-x").mkdir()
    (tmp_path / "checkpoint-000008").mkdir()
    (tmp_path / "checkpoint-000008" / "adapter_model.safetensors").write_bytes(b"half")
    assert find_checkpoint(tmp_path).name == "checkpoint-000004"
    save_checkpoint(tmp_path, model, step=5, name="adapter")
    assert find_checkpoint(tmp_path).name == "adapter"  # the newest by step
    with pytest.raises(UserError, match="no complete checkpoint"):
        find_checkpoint(tmp_path / "checkpoint-000008")
