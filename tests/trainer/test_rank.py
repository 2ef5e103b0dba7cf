"""`lorascope rank` on the tiny model: an order file `train --order` reads, scores equal a direct computation."""

from __future__ import annotations

import json
import math

import pytest
import torch

from lorascope.protocol.cli import main
from lorascope.trainer.datasets import collate, load_dataset, read_order
from lorascope.trainer.models import find_target_modules, load_model
from lorascope.trainer.observers.volatility import per_example_loss

RECORDS = [
    {"instruction": "What is 2 + 2?", "output": "4"},
    {"instruction": "Name the capital of France.", "output": "Paris is the capital of France."},
    {"instruction": "Сколько будет 3 + 5?", "output": "8"},
    {"instruction": "Is every square a rectangle?", "output": "Yes: a square has four right angles."},
    {"instruction": "Translate 'cat' to Russian.", "output": "кошка"},
    {"instruction": "What comes after Monday?", "output": "Tuesday comes after Monday."},
    {"instruction": "Spell 'dog' backwards.", "output": "god"},
]


@pytest.fixture
def dataset(tmp_path):
    path = tmp_path / "tiny.alpaca.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in RECORDS), encoding="utf-8")
    return path


def test_rank_writes_an_order_train_can_read(tmp_path, dataset, tiny_model_dir, capsys):
    out = tmp_path / "order.txt"
    reordered = tmp_path / "ranked.alpaca.jsonl"
    code = main(["rank", str(dataset), "--model", str(tiny_model_dir), "--out", str(out),
                 "--reordered", str(reordered), "--batch-size", "3", "--rank", "4", "--alpha", "8", "--quiet"])
    assert code == 0
    assert "ranked 7 examples by grad_norm" in capsys.readouterr().out

    rows = [line.split() for line in out.read_text().splitlines() if not line.startswith("#")]
    ids = [int(r[0]) for r in rows]
    norms = [float(r[2]) for r in rows]
    assert sorted(ids) == list(range(len(RECORDS)))
    assert norms == sorted(norms) and all(math.isfinite(n) and n > 0 for n in norms)

    model, tokenizer, _ = load_model(str(tiny_model_dir), device="cpu")
    data = load_dataset(dataset, tokenizer, max_length=128, heldout=0)
    assert read_order(out, data) == ids  # example ids are positions here: nothing was held out
    lines = dataset.read_text(encoding="utf-8").splitlines()
    assert reordered.read_text(encoding="utf-8").splitlines() == [lines[i] for i in ids]

    # The scores are the per-example figures at the base model: check one against its own backward.
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0,
                                                  target_modules=find_target_modules(model), task_type="CAUSAL_LM"))
    peft_model.eval()
    example = data.examples[ids[-1]]
    batch = collate([example], tokenizer.pad_token_id)
    loss, _ = per_example_loss(peft_model(input_ids=batch["input_ids"]).logits, batch["labels"])
    loss[0].backward()
    norm = math.sqrt(sum(float(p.grad.double().square().sum()) for n, p in peft_model.named_parameters()
                         if "lora_" in n and p.grad is not None))
    assert float(rows[-1][1]) == pytest.approx(loss.item(), rel=1e-4)
    assert norms[-1] == pytest.approx(norm, rel=1e-4)


def test_rank_by_loss_and_bad_arguments(tmp_path, dataset, tiny_model_dir, capsys):
    out = tmp_path / "by_loss.txt"
    assert main(["rank", str(dataset), "--model", str(tiny_model_dir), "--out", str(out), "--by", "loss", "--quiet"]) == 0
    losses = [float(line.split()[1]) for line in out.read_text().splitlines() if not line.startswith("#")]
    assert losses == sorted(losses)
    assert all(line.split()[2] == "nan" for line in out.read_text().splitlines() if not line.startswith("#"))  # no backward

    assert main(["rank", str(tmp_path / "missing.jsonl"), "--model", str(tiny_model_dir), "--quiet"]) == 2
    assert "missing.jsonl: dataset file not found" in capsys.readouterr().err
    assert main(["rank", str(dataset), "--batch-size", "0"]) == 2
    assert "--batch-size must be >= 1" in capsys.readouterr().err
