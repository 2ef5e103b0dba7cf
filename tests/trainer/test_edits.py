"""Manual logit edits on a tiny random Llama: the target, the constraint, validation, checkpoint state."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch

from lorascope.trainer.edits import (
    DEFAULT_TOLERANCE,
    EditError,
    EditManager,
    kl_to_target,
    target_distribution,
    target_log_distribution,
)
from lorascope.trainer.probes import Probe, ProbeSet

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


# --------------------------------------------------------------------------- the pure target
def test_target_distribution_matches_the_formula():
    torch.manual_seed(1)
    p = torch.softmax(torch.randn(50, dtype=torch.float64) * 2, dim=0)
    for t, q in [(3, 0.6), (0, 0.01), (49, 0.999), (7, float(p[7]))]:
        target = target_distribution(p, t, q)
        assert float(target.sum()) == pytest.approx(1.0, abs=1e-12)
        assert float(target[t]) == pytest.approx(q, abs=1e-15)
        others = torch.arange(50) != t
        expected = p[others] * (1 - q) / (1 - p[t])
        assert torch.allclose(target[others], expected, rtol=1e-12, atol=0)
    # q equal to the current probability leaves the distribution as it is
    assert torch.allclose(target_distribution(p, 7, float(p[7])), p, rtol=1e-12)


def test_target_distribution_edge_cases():
    p = torch.softmax(torch.randn(20, dtype=torch.float64), dim=0)
    one = target_distribution(p, 4, 1.0)  # q = 1: all mass on the token
    assert float(one[4]) == 1.0 and float(one.sum()) == 1.0
    zero = target_distribution(p, 4, 0.0)  # q = 0: the token gone, the rest rescaled
    assert float(zero[4]) == 0.0 and float(zero.sum()) == pytest.approx(1.0, abs=1e-12)
    assert torch.allclose(zero[5:], p[5:] / (1 - p[4]))
    certain = torch.zeros(20, dtype=torch.float64)  # p(t) = 1: no shares to keep, split 1 − q evenly
    certain[2] = 1.0
    split = target_distribution(certain, 2, 0.5)
    assert float(split.sum()) == pytest.approx(1.0) and float(split[2]) == 0.5
    assert torch.allclose(split[torch.arange(20) != 2], torch.full((19,), 0.5 / 19, dtype=torch.float64))
    batched = target_distribution(torch.stack([p, p]), 1, 0.3)  # works on [..., V]
    assert torch.allclose(batched.sum(-1), torch.ones(2, dtype=torch.float64))


def test_log_target_is_stable_when_the_token_is_certain_in_float32():
    logits = torch.zeros(1000)
    logits[10] = 120.0  # p(t) rounds to exactly 1 in float32: 1 − p(t) would divide by zero
    logits[11] = 1.0
    logp = torch.log_softmax(logits, dim=-1)
    assert float(logp[10].exp()) == 1.0
    target = target_log_distribution(logp, 10, 0.4)
    assert torch.isfinite(target).all()
    assert float(target.exp().sum()) == pytest.approx(1.0, abs=1e-5)
    # the others keep their relative shares: token 11 is e times token 12
    assert float(target[11] - target[12]) == pytest.approx(1.0, abs=1e-5)
    # matches the probability-space formula where that one is well defined
    p = torch.softmax(torch.randn(300, dtype=torch.float64), dim=0)
    for q in (0.0, 0.25, 1.0):
        direct = target_distribution(p, 5, q)
        via_logs = target_log_distribution(p.log(), 5, q).exp().double()
        assert torch.allclose(direct, via_logs, atol=1e-6)


def test_kl_to_target():
    logp = torch.log_softmax(torch.randn(100), dim=-1)
    assert float(kl_to_target(logp, logp)) == pytest.approx(0.0, abs=1e-6)
    one_hot = target_log_distribution(logp, 3, 1.0)  # KL(δ_t ‖ p) = −log p(t), 0·log 0 terms are 0
    assert float(kl_to_target(one_hot, logp)) == pytest.approx(-float(logp[3]), rel=1e-5)
    target = target_log_distribution(logp, 3, 0.5)
    direct = (target.exp() * (target - logp)).sum()
    assert float(kl_to_target(target, logp)) == pytest.approx(float(direct), rel=1e-5)


# --------------------------------------------------------------------------- a tiny peft model
@pytest.fixture(scope="module")
def tokenizer(embedded_tokenizer):
    return embedded_tokenizer


def make_model(tokenizer, seed: int = 0):
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        intermediate_size=128,
        vocab_size=len(tokenizer),
        max_position_embeddings=128,
        # A wide init makes the random model's next-token distributions peaked, like a trained
        # model's; with the default 0.02 every distribution is near uniform over 49k tokens and no
        # rank-4 adapter can reshape it.
        initializer_range=1.0,
        tie_word_embeddings=True,
    )
    model = get_peft_model(LlamaForCausalLM(config), LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=TARGETS))
    model.train()
    return model


def make_probes(tokenizer) -> ProbeSet:
    texts = {
        "capital": "The capital of France is",
        "arithmetic": "Question: What is 7 plus 5?\nAnswer:",
        "logic": "All cats are animals. Tom is a cat. Therefore, Tom is",
    }
    return ProbeSet([Probe(pid, text, tokenizer.encode(text, add_special_tokens=False)) for pid, text in texts.items()])


def ranked_token(manager: EditManager, probe_id: str, rank: int) -> tuple[int, float]:
    with torch.no_grad():
        logp = manager._probe_logprobs(manager.probes.get(probe_id).token_ids, grad=False)[-1]
    values, ids = logp.topk(rank + 1)
    return int(ids[rank]), float(values[rank].exp())


def trainable(model):
    return [p for p in model.parameters() if p.requires_grad]


def train_step(model, manager, optimizer, batch) -> float | None:
    """One step of a real loop: LM loss on a batch, plus the edits' aux loss, then the optimizer."""
    loss = model(input_ids=batch, labels=batch).loss
    loss.backward()
    aux = manager.aux_loss()
    if aux is not None:
        aux.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return None if aux is None else float(aux.detach())


# --------------------------------------------------------------------------- training it in
def test_edit_is_trained_in_and_reported_achieved(tokenizer):
    from lorascope.trainer.observers.logit_shift import LogitShiftObserver

    model = make_model(tokenizer)
    probes = make_probes(tokenizer)
    observer = LogitShiftObserver(model, tokenizer, probes, anchors=[], every=1)
    manager = EditManager(model, tokenizer, probes, observer)
    token_id, p_start = ranked_token(manager, "capital", 2)
    assert p_start < 0.3
    frames = manager.request({"probe_id": "capital", "token_id": token_id, "q": 0.6, "budget": 60}, step=0)
    assert [f.state for f in frames] == ["requested", "active"]
    assert frames[0].p_token_start == pytest.approx(p_start, rel=1e-4)
    assert frames[0].token and frames[0].position == len(probes.get("capital").token_ids) - 1

    optimizer = torch.optim.AdamW(trainable(model), lr=3e-3)
    batch = torch.tensor([tokenizer.encode("Tom is a cat and all cats are animals. Seven plus five is twelve.")])
    history = []
    for step in range(1, 61):
        train_step(model, manager, optimizer, batch)
        updates = manager.after_step(step)
        assert len(updates) == 1
        history.append(updates[0])
        if updates[0].state != "active":
            break
    final = history[-1]
    assert final.state == "achieved", [(f.steps_used, round(f.p_token, 3), round(f.kl_to_target, 3)) for f in history]
    assert final.kl_to_target < final.tolerance == DEFAULT_TOLERANCE
    assert final.steps_used == len(history) <= final.budget
    # Pinsker: an achieved edit has its token within √(τ/2) of q
    assert abs(final.p_token - 0.6) <= math.sqrt(final.tolerance / 2)
    # the reported probability is the model's, measured independently
    with torch.no_grad():
        now = observer.tuned_logprobs("capital")[-1, token_id].exp()
    assert final.p_token == pytest.approx(float(now), rel=1e-4)
    # collateral drift is reported for the other probes, and it is the change of their mean KL
    assert set(final.collateral) == {"arithmetic", "logic"}
    kls = observer.mean_kls()
    start = manager.edits[final.edit_id].collateral_start
    for pid, drift in final.collateral.items():
        assert drift == pytest.approx(kls[pid] - start[pid], abs=1e-6)
    assert not manager.has_active() and manager.aux_loss() is None
    assert manager.after_step(99) == []


def test_budget_spent_means_failed(tokenizer):
    model = make_model(tokenizer)
    manager = EditManager(model, tokenizer, make_probes(tokenizer))
    frames = manager.request({"probe_id": "logic", "token": " Paris", "q": 0.9, "budget": 2}, step=5)
    assert frames[-1].state == "active" and frames[-1].start_step == 5
    optimizer = torch.optim.SGD(trainable(model), lr=1e-6)  # far too small to get there in 2 steps
    batch = torch.tensor([tokenizer.encode("Paris")])
    train_step(model, manager, optimizer, batch)
    assert manager.after_step(6)[0].state == "active"
    train_step(model, manager, optimizer, batch)
    last = manager.after_step(7)[0]
    assert last.state == "failed" and last.steps_used == 2 and "budget" in last.message


def test_several_edits_at_once_and_cancel(tokenizer):
    model = make_model(tokenizer)
    manager = EditManager(model, tokenizer, make_probes(tokenizer))
    a = manager.request({"probe_id": "capital", "token": " Paris", "q": 0.5}, step=0)[-1]
    b = manager.request({"probe_id": "capital", "token": " London", "q": 0.2, "position": 1}, step=0)[-1]
    c = manager.request({"probe_id": "logic", "token_id": 5, "q": 1.0, "weight": 0.5}, step=0)[-1]
    assert (a.edit_id, b.edit_id, c.edit_id) == ("e1", "e2", "e3")
    # the aux loss is Σ λ·KL over the active edits
    with torch.no_grad():
        total = float(manager.aux_loss())
        logp = {pid: manager._probe_logprobs(manager.probes.get(pid).token_ids, grad=True) for pid in ("capital", "logic")}
        expected = sum(
            e.weight * float(kl_to_target(e.target_logp, logp[e.probe_id][e.position])) for e in manager.edits.values()
        )
    assert total == pytest.approx(expected, rel=1e-5)
    assert total == pytest.approx(a.kl_to_target + b.kl_to_target + 0.5 * c.kl_to_target, rel=1e-4)

    ending = manager.at_run_end(step=2)  # the run ends here: a last word on each open edit, nothing else
    assert [(f.edit_id, f.state) for f in ending] == [("e1", "active"), ("e2", "active"), ("e3", "active")]
    assert "still active, a resume from the checkpoint goes on" in ending[0].message and manager.has_active()

    cancelled = manager.cancel("e2", step=3)
    assert cancelled.state == "cancelled" and cancelled.edit_id == "e2"
    assert {e.edit_id for e in manager.edits.values() if e.state == "active"} == {"e1", "e3"}
    with pytest.raises(EditError, match="edit e2 is already cancelled"):
        manager.cancel("e2", step=3)
    with pytest.raises(EditError, match="no edit 'e9'"):
        manager.cancel("e9", step=3)
    manager.cancel("e1", 4), manager.cancel("e3", 4)
    assert not manager.has_active() and manager.aux_loss() is None


def test_an_edit_already_met_is_achieved_at_once(tokenizer):
    model = make_model(tokenizer)
    manager = EditManager(model, tokenizer, make_probes(tokenizer))
    token_id, p_now = ranked_token(manager, "capital", 0)
    frames = manager.request({"probe_id": "capital", "token_id": token_id, "q": p_now}, step=2)
    assert [f.state for f in frames] == ["requested", "achieved"] and frames[-1].steps_used == 0
    assert not manager.has_active()


# --------------------------------------------------------------------------- refusing bad edits
BAD_EDITS = [
    ({"probe_id": "nope", "token": " Paris", "q": 0.5}, r"probe_id: no probe 'nope' \(probes: 'capital'"),
    ({"probe_id": "capital", "position": 5, "token": " Paris", "q": 0.5}, r"position: 5 is out of range for probe 'capital' \(0\.\.4"),
    ({"probe_id": "capital", "position": -1, "token": " Paris", "q": 0.5}, r"position: must be an integer ≥ 0"),
    ({"probe_id": "capital", "token": " Lyonnais", "q": 0.5}, r"token: ' Lyonnais' is 3 tokens: \[' Ly', 'onna', 'is'\]"),
    ({"probe_id": "capital", "token": " Paris", "q": 1.5}, r"q: must be in \[0, 1\], got 1.5"),
    ({"probe_id": "capital", "token": " Paris", "q": -0.1}, r"q: must be in \[0, 1\], got -0.1"),
    ({"probe_id": "capital", "token": " Paris", "q": float("nan")}, r"q: must be finite, got nan"),
    ({"probe_id": "capital", "token": " Paris"}, r"q: missing"),
    ({"probe_id": "capital", "token": " Paris", "q": "0.5"}, r"q: must be a number, got '0.5'"),
    ({"probe_id": "capital", "token_id": 10**7, "q": 0.5}, r"token_id: 10000000 is not in the vocabulary \(0\.\.49151\)"),
    ({"probe_id": "capital", "token_id": 1, "token": " Paris", "q": 0.5}, r"token/token_id: give one of them"),
    ({"probe_id": "capital", "q": 0.5}, r"token: missing"),
    ({"probe_id": "capital", "token": " Paris", "q": 0.5, "weight": 0}, r"weight: must be in \(0, 1000\], got 0"),
    ({"probe_id": "capital", "token": " Paris", "q": 0.5, "weight": 1e30}, r"weight: must be in \(0, 1000\]"),
    ({"probe_id": "capital", "token": " Paris", "q": 0.5, "weight": float("inf")}, r"weight: must be finite"),
    ({"probe_id": "capital", "token": " Paris", "q": 0.5, "tolerance": -1}, r"tolerance: must be > 0"),
    ({"probe_id": "capital", "token": " Paris", "q": 0.5, "budget": 0}, r"budget: must be an integer ≥ 1"),
    ({"probe_id": "capital", "token": " Paris", "q": 0.5, "budget": 2.5}, r"budget: must be an integer ≥ 1"),
    ({"probe_id": "capital", "token": " Paris", "q": 0.5, "qq": 1}, r"qq: unknown field"),
    ({"probe": "capital", "token": " Paris", "q": 0.5}, r"probe_id: missing; .*probe: unknown field"),
    ("capital", r"edit request must be a map"),
]


def snapshot(model, optimizer):
    params = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return params, copy.deepcopy(optimizer.state_dict())


@pytest.fixture(scope="module")
def trained_setup(tokenizer):
    """A model with an active edit and an optimizer that has taken steps (so it has state to disturb)."""
    model = make_model(tokenizer)
    manager = EditManager(model, tokenizer, make_probes(tokenizer))
    manager.request({"probe_id": "logic", "token": " Paris", "q": 0.3}, step=0)
    optimizer = torch.optim.AdamW(trainable(model), lr=1e-3)
    batch = torch.tensor([tokenizer.encode("All cats are animals.")])
    for step in (1, 2):
        train_step(model, manager, optimizer, batch)
        manager.after_step(step)
    return model, manager, optimizer


@pytest.mark.parametrize("args,message", BAD_EDITS, ids=[m.split(":")[0].strip("\\r ") for _, m in BAD_EDITS])
def test_bad_edit_is_refused_and_changes_nothing(trained_setup, args, message):
    model, manager, optimizer = trained_setup
    params, opt_state = snapshot(model, optimizer)
    edits_before = json.dumps(manager.state_dict(), sort_keys=True)
    with pytest.raises(EditError, match=message):
        manager.request(args, step=3)
    assert model.training
    for name, value in model.state_dict().items():
        assert torch.equal(value, params[name]), name
    after = optimizer.state_dict()
    for key, state in opt_state["state"].items():
        for field, value in state.items():
            assert torch.equal(after["state"][key][field], value)
    assert json.dumps(manager.state_dict(), sort_keys=True) == edits_before


def test_every_bad_field_is_named_in_one_message(tokenizer):
    manager = EditManager(make_model(tokenizer), tokenizer, make_probes(tokenizer))
    with pytest.raises(EditError) as caught:
        manager.request({"probe_id": "capital", "position": 9, "token": " Lyonnais", "q": float("nan"), "budget": 0}, step=0)
    fields = [part.split(":")[0] for part in str(caught.value).split("; ")]
    assert fields == ["position", "token", "q", "budget"]


# --------------------------------------------------------------------------- checkpoints
def test_state_dict_round_trip_keeps_active_edits(tokenizer):
    model = make_model(tokenizer)
    probes = make_probes(tokenizer)
    manager = EditManager(model, tokenizer, probes)
    manager.request({"probe_id": "capital", "token": " Paris", "q": 0.7, "budget": 40}, step=0)
    manager.request({"probe_id": "logic", "token": " yes", "q": 0.95}, step=0)
    manager.request({"probe_id": "arithmetic", "token": " twelve", "q": 0.2}, step=0)
    manager.cancel("e3", step=0)
    optimizer = torch.optim.AdamW(trainable(model), lr=1e-3)
    batch = torch.tensor([tokenizer.encode("The capital of France is Paris.")])
    for step in (1, 2, 3):
        train_step(model, manager, optimizer, batch)
        manager.after_step(step)

    state = json.loads(json.dumps(manager.state_dict()))  # what a checkpoint stores
    resumed = EditManager(model, tokenizer, probes)
    resumed.load_state_dict(state)
    assert resumed.has_active()
    assert {k: e.state for k, e in resumed.edits.items()} == {k: e.state for k, e in manager.edits.items()}
    for edit_id in ("e1", "e2"):
        old, new = manager.edits[edit_id], resumed.edits[edit_id]
        assert new.steps_used == old.steps_used == 3 and new.start_step == 0 and new.budget == old.budget
        assert torch.equal(new.target_logp, old.target_logp)
    assert resumed.edits["e3"].target_logp is None
    assert float(resumed.aux_loss()) == pytest.approx(float(manager.aux_loss()), rel=1e-6)
    # numbering continues after a resume: no two edits of a run share an id
    frames = resumed.request({"probe_id": "capital", "token": " London", "q": 0.1}, step=4)
    assert frames[0].edit_id == "e4"


def test_collateral_is_measured_every_few_steps_and_at_the_end(tokenizer):
    from lorascope.trainer.edits import COLLATERAL_EVERY
    from lorascope.trainer.observers.logit_shift import LogitShiftObserver

    model = make_model(tokenizer)
    probes = make_probes(tokenizer)
    manager = EditManager(model, tokenizer, probes, LogitShiftObserver(model, tokenizer, probes, anchors=[]))
    budget = COLLATERAL_EVERY + 1
    manager.request({"probe_id": "capital", "token": " Lyon", "q": 0.9, "budget": budget}, step=0)
    optimizer = torch.optim.AdamW(trainable(model), lr=1e-3)
    batch = torch.tensor([tokenizer.encode("Seven plus five is twelve.")])
    frames = []
    for step in range(1, budget + 1):
        train_step(model, manager, optimizer, batch)
        frames += manager.after_step(step)
    assert [f.steps_used for f in frames] == list(range(1, budget + 1)) and frames[-1].state == "failed"
    assert all(f.collateral == {} for f in frames[: COLLATERAL_EVERY - 1])  # not measured yet
    measured = frames[COLLATERAL_EVERY - 1].collateral
    assert set(measured) == {"arithmetic", "logic"} and all(v > 0 for v in measured.values())
    assert set(frames[-1].collateral) == {"arithmetic", "logic"} and frames[-1].collateral != measured
