"""LogitShiftObserver on a tiny random Llama with the embedded tokenizer: KL, entropy, top-k, anchors."""

from __future__ import annotations

import math

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

from lorascope.trainer.observers.logit_shift import LogitShiftObserver
from lorascope.trainer.probes import Probe, ProbeSet
from lorascope.trainer.token_bytes import token_bytes


@pytest.fixture
def peft_model(tiny_model_dir):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], lora_dropout=0.1))
    model.train()
    return model


def move_adapter(model, scale=0.5):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.add_(torch.randn_like(p) * scale)


def direct_logprobs(model, ids, adapter: bool):
    model.eval()
    with torch.no_grad():
        if adapter:
            logits = model(input_ids=torch.tensor([ids])).logits[0]
        else:
            with model.disable_adapter():
                logits = model(input_ids=torch.tensor([ids])).logits[0]
    model.train()
    return torch.log_softmax(logits.double(), dim=-1)


def test_kl_entropy_topk_and_anchors_equal_a_direct_computation(peft_model, embedded_tokenizer):
    probes = ProbeSet.default(embedded_tokenizer, heldout_texts=["A held-out example: two plus two is four."])
    assert probes.ids[:2] == ["capital-fr", "capital-fr-ru"] and probes.ids[-1] == "heldout-0"
    assert " Paris" in probes.anchors
    observer = LogitShiftObserver(peft_model, embedded_tokenizer, probes, every=10, top_k=5)
    assert peft_model.training  # measuring never leaves the model in eval mode
    base = {p.probe_id: direct_logprobs(peft_model, p.token_ids, adapter=False) for p in probes}

    frame0 = observer.observe(0)
    assert all(pos.kl == pytest.approx(0, abs=1e-5) for ps in frame0.probes for pos in ps.positions)

    move_adapter(peft_model)
    assert observer.observe(5) is None
    frame = observer.observe(10)
    assert frame.step == 10 and frame.top_k == 5
    paris = embedded_tokenizer(" Paris", add_special_tokens=False)["input_ids"][0]
    for shift, probe in zip(frame.probes, probes):
        tuned = direct_logprobs(peft_model, probe.token_ids, adapter=True)
        b = base[probe.probe_id]
        kl = (b.exp() * (b - tuned)).sum(-1)
        assert len(shift.positions) == len(probe.token_ids)
        assert [p.kl for p in shift.positions] == pytest.approx(kl.tolist(), rel=1e-4, abs=1e-6)
        assert shift.mean_kl == pytest.approx(kl.mean().item(), rel=1e-4)
        for t, pos in enumerate(shift.positions):
            assert pos.position == t
            assert pos.entropy_base == pytest.approx(-(b[t].exp() * b[t]).sum().item(), rel=1e-4)
            assert pos.entropy_tuned == pytest.approx(-(tuned[t].exp() * tuned[t]).sum().item(), rel=1e-4)
            expected_ids = set(b[t].topk(5).indices.tolist()) | set(tuned[t].topk(5).indices.tolist())
            assert {tp.token_id for tp in pos.top} == expected_ids
            for tp in pos.top:
                assert tp.p_base == pytest.approx(b[t, tp.token_id].exp().item(), rel=1e-4)
                assert tp.p_tuned == pytest.approx(tuned[t, tp.token_id].exp().item(), rel=1e-4)
                assert tp.token_bytes == token_bytes(embedded_tokenizer, tp.token_id)
                assert "\ufffd" not in tp.token
            anchor = next(a for a in pos.anchors if a.token_id == paris)
            assert anchor.token == " Paris"
            assert anchor.p_tuned == pytest.approx(tuned[t, paris].exp().item(), rel=1e-4)
    # mean_kls (the edits' collateral drift) agrees with the frame
    assert observer.mean_kls() == pytest.approx({p.probe_id: p.mean_kl for p in frame.probes}, rel=1e-4)
    assert torch.allclose(observer.base_logprobs("capital-fr").double(), base["capital-fr"], atol=1e-5)
    tuned_now = direct_logprobs(peft_model, probes.get("capital-fr").token_ids, adapter=True)
    assert torch.allclose(observer.tuned_logprobs("capital-fr").double(), tuned_now, atol=1e-5)


def test_probe_and_anchor_infos_and_continuation(peft_model, embedded_tokenizer):
    probes = ProbeSet([Probe("ru", "Столица Франции —", embedded_tokenizer("Столица Франции —")["input_ids"])], [" Paris", " Москва"])
    observer = LogitShiftObserver(peft_model, embedded_tokenizer, probes)
    info = observer.probe_infos()[0]
    assert b"".join(info.token_bytes).decode() == "Столица Франции —"
    assert all("\ufffd" not in t for t in info.tokens)
    # " Москва" is several tokens: skipped, and said so
    assert [a.token for a in observer.anchor_infos()] == [" Paris"] and observer.skipped_anchors == [" Москва"]
    base_text, tuned_text = observer.continuation("ru", max_new_tokens=4)
    assert isinstance(base_text, str) and isinstance(tuned_text, str)
    assert peft_model.training
    with pytest.raises(KeyError):
        observer.continuation("nope")
