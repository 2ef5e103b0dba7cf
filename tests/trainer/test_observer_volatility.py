"""VolatilityObserver: per-example grad norms from one backward equal one-example-at-a-time backwards."""

from __future__ import annotations

import math

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

from lorascope.trainer.observers.per_example_grads import sq_norms_direct, sq_norms_gram
from lorascope.trainer.observers.volatility import VolatilityObserver, per_example_loss

ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
VOCAB = 256
PAD = 0


def counting(start: int, length: int = 12) -> list[int]:
    return [1 + (start + i) % (VOCAB - 1) for i in range(length)]


def tiny_peft(pretrain_counting: bool = False, seed: int = 0):
    torch.manual_seed(seed)
    config = LlamaConfig(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
        intermediate_size=128, vocab_size=VOCAB, max_position_embeddings=64, pad_token_id=PAD,
    )
    base = LlamaForCausalLM(config)
    if pretrain_counting:  # a base that "already knows" counting, so a random sequence stands out
        optimizer = torch.optim.Adam(base.parameters(), lr=1e-2)
        for _ in range(50):
            ids, mask, labels = right_padded([counting(int(k)) for k in torch.randint(0, VOCAB, (8,))])
            loss, _ = per_example_loss(base(input_ids=ids, attention_mask=mask).logits, labels)
            loss.mean().backward()
            optimizer.step()
            optimizer.zero_grad()
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=ALL_LINEAR, lora_dropout=0.0))
    with torch.no_grad():  # peft starts B at zero, which would make every A gradient zero
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    model.train()
    return model


def right_padded(sequences: list[list[int]]):
    longest = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), longest), PAD)
    mask = torch.zeros_like(ids)
    labels = torch.full_like(ids, -100)
    for i, s in enumerate(sequences):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
        labels[i, : len(s)] = torch.tensor(s)
        labels[i, :2] = -100  # as if a prompt: not every position bears loss
    return ids, mask, labels


def lora_grad_norm(model) -> float:
    total = sum(p.grad.double().square().sum() for n, p in model.named_parameters() if "lora_" in n and p.grad is not None)
    return math.sqrt(float(total))


def reference_norms(model, sequences):
    """One forward + backward per example, alone and unpadded: the definition of a per-example gradient."""
    norms, losses = [], []
    for s in sequences:
        model.zero_grad(set_to_none=True)
        ids, mask, labels = right_padded([s])
        loss, _ = per_example_loss(model(input_ids=ids, attention_mask=mask).logits, labels)
        loss[0].backward()
        norms.append(lora_grad_norm(model))
        losses.append(loss.item())
    model.zero_grad(set_to_none=True)
    return norms, losses


def test_per_example_loss_matches_cross_entropy():
    torch.manual_seed(1)
    logits = torch.randn(3, 6, 11)
    labels = torch.randint(0, 11, (3, 6))
    labels[0, :3] = -100
    labels[2, 1:] = -100  # no loss tokens after the shift
    losses, counts = per_example_loss(logits, labels)
    assert counts.tolist() == [3, 5, 0]
    for i in range(2):
        keep = labels[i, 1:] != -100
        expected = torch.nn.functional.cross_entropy(logits[i, :-1][keep], labels[i, 1:][keep])
        assert losses[i].item() == pytest.approx(expected.item(), rel=1e-6)
    assert losses[2].item() == 0.0


def test_direct_and_gram_forms_agree_with_explicit_per_example_gradients():
    torch.manual_seed(2)
    a, g = torch.randn(3, 7, 5, dtype=torch.float64), torch.randn(3, 7, 4, dtype=torch.float64)
    explicit = torch.stack([(g[i].T @ a[i]).square().sum() for i in range(3)])
    assert torch.allclose(sq_norms_direct(a, g), explicit)
    assert torch.allclose(sq_norms_gram(a, g), explicit)


@pytest.mark.parametrize("batch_size", [3, 4])
def test_grad_norms_equal_one_at_a_time_reference_with_padding_and_accumulation(batch_size):
    model = tiny_peft()
    torch.manual_seed(3)
    lengths = [9, 5, 12, 7, 10, 6, 11, 4][: 2 * batch_size]
    sequences = [torch.randint(1, VOCAB, (n,)).tolist() for n in lengths]
    expected_norms, expected_losses = reference_norms(model, sequences)

    grad_accum = 2
    observer = VolatilityObserver(model, every=1)
    ids_seen = []
    for micro in range(grad_accum):
        batch = sequences[micro * batch_size : (micro + 1) * batch_size]
        example_ids = list(range(micro * batch_size, (micro + 1) * batch_size))
        ids, mask, labels = right_padded(batch)
        with observer.capture(loss_weight=1 / (batch_size * grad_accum)):
            losses, counts = per_example_loss(model(input_ids=ids, attention_mask=mask).logits, labels)
            (losses.mean() / grad_accum).backward()
        observer.record(example_ids, losses.detach(), counts)
        ids_seen += example_ids
    frame = observer.observe(1)

    assert frame.example_ids == ids_seen
    assert frame.token_counts == [n - 2 for n in lengths]
    assert frame.losses.values() == pytest.approx(expected_losses, rel=1e-4)
    assert frame.grad_norms.values() == pytest.approx(expected_norms, rel=1e-4)
    # the step's own gradient is untouched by the hooks: it is the mean of the per-example ones
    assert lora_grad_norm(model) > 0
    norms = frame.grad_norms.values()
    mean = sum(norms) / len(norms)
    cv = math.sqrt(sum((n - mean) ** 2 for n in norms) / (len(norms) - 1)) / mean
    assert frame.dispersion == pytest.approx(cv, rel=1e-5)
    observer.close()


def test_grad_norms_with_lora_dropout_zero_and_hooks_inactive_when_paused():
    model = tiny_peft()
    torch.manual_seed(4)
    sequences = [torch.randint(1, VOCAB, (n,)).tolist() for n in (6, 8, 5)]
    expected, _ = reference_norms(model, sequences)
    observer = VolatilityObserver(model)
    ids, mask, labels = right_padded(sequences)
    with observer.capture(loss_weight=1 / 3):
        losses, counts = per_example_loss(model(input_ids=ids, attention_mask=mask).logits, labels)
        losses.mean().backward()
        # an auxiliary loss (e.g. a manual edit) inside a paused block must not count
        with observer.paused():
            aux, _ = per_example_loss(model(input_ids=ids, attention_mask=mask).logits, labels)
            (10 * aux.sum()).backward()
    observer.record([10, 11, 12], losses.detach(), counts)
    frame = observer.observe(5)
    assert frame.grad_norms.values() == pytest.approx(expected, rel=1e-4)


def test_outlier_example_is_flagged_with_its_snippet():
    model = tiny_peft(pretrain_counting=True)
    texts = {}
    observer = VolatilityObserver(model, every=1, window=10, spike_score=3.0, snippet=lambda i: texts[i])
    torch.manual_seed(5)
    frames = []
    for step in range(1, 4):
        example_ids = [step * 10 + j for j in range(5)]
        sequences = [counting(int(k)) for k in torch.randint(0, VOCAB, (5,))]
        if step == 3:
            sequences[2] = torch.randint(1, VOCAB, (12,)).tolist()
        for i, s in zip(example_ids, sequences):
            texts[i] = " ".join(map(str, s))
        ids, mask, labels = right_padded(sequences)
        with observer.capture(loss_weight=1 / 5):
            losses, counts = per_example_loss(model(input_ids=ids, attention_mask=mask).logits, labels)
            losses.mean().backward()
        observer.record(example_ids, losses.detach(), counts)
        model.zero_grad(set_to_none=True)
        frames.append(observer.observe(step))

    assert frames[0].spikes == [] and frames[1].spikes == []
    spikes = frames[2].spikes
    assert spikes and spikes[0].example_id == 32  # the random sequence, highest score first
    assert all(s.score < spikes[0].score / 2 for s in spikes[1:])  # nothing else comes close
    assert spikes[0].score >= 3.0 and spikes[0].tokens == 10
    assert spikes[0].snippet == texts[32]
    assert frames[2].baseline > 0
    # every example's text travels too, in example order, so a calm step can show what moved most
    assert frames[0].snippets == [texts[i] for i in frames[0].example_ids]


def test_cadence_and_loss_sensitivity():
    model = tiny_peft()
    observer = VolatilityObserver(model, every=2)
    ids, mask, labels = right_padded([[5, 6, 7, 8], [9, 10, 11, 12, 13]])
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    for step in (1, 2):
        with observer.capture(loss_weight=1 / 2):
            losses, counts = per_example_loss(model(input_ids=ids, attention_mask=mask).logits, labels)
            losses.mean().backward()
        observer.record([0, 1], losses.detach(), counts)
        optimizer.step()
        optimizer.zero_grad()
        with torch.no_grad():
            after, _ = per_example_loss(model(input_ids=ids, attention_mask=mask).logits, labels)
        observer.record_after([0, 1], after)
        frame = observer.observe(step)
        if step == 1:
            assert frame is None
    expected = (after - losses.detach()).tolist()
    assert frame.sensitivity.values() == pytest.approx(expected, rel=1e-4, abs=1e-6)
    assert all(v < 0 for v in expected)  # a step of SGD on the batch lowers its loss
    assert all(math.isfinite(v) for v in frame.grad_norms.values())


def test_gathered_frame_holds_every_ranks_examples():
    """Under several processes `gather` merges the ranks' tables; here two replicas stand for two ranks."""
    torch.manual_seed(6)
    sequences = [torch.randint(1, VOCAB, (n,)).tolist() for n in (6, 9, 7, 8)]
    replicas = [tiny_peft(), tiny_peft()]  # same seed: identical weights, as DDP keeps them
    expected, _ = reference_norms(replicas[0], sequences)
    tables = {}
    observers = [
        VolatilityObserver(replicas[0], gather=lambda t: torch.cat([t, tables[1]], dim=1)),
        VolatilityObserver(replicas[1], gather=lambda t: tables.setdefault(1, t)),
    ]
    for rank in (1, 0):  # rank 1 first: its table is what rank 0's collective receives
        chunk = sequences[rank * 2 : rank * 2 + 2]
        ids, mask, labels = right_padded(chunk)
        with observers[rank].capture(loss_weight=1 / 4):  # mean over the global batch of 4
            losses, counts = per_example_loss(replicas[rank](input_ids=ids, attention_mask=mask).logits, labels)
            (losses.sum() / 4).backward()
        observers[rank].record([100 + rank * 2, 101 + rank * 2], losses.detach(), counts)
        frame = observers[rank].observe(1)
    assert frame.example_ids == [100, 101, 102, 103]
    assert frame.grad_norms.values() == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("use_reentrant", [False, True])
def test_grad_norms_under_gradient_checkpointing(use_reentrant):
    """Recomputed forwards must not count an example twice (nor zero times)."""
    torch.manual_seed(4)
    sequences = [torch.randint(1, VOCAB, (n,)).tolist() for n in (6, 8, 5)]
    model = tiny_peft()
    expected, _ = reference_norms(model, sequences)
    model.base_model.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": use_reentrant})
    if use_reentrant:
        model.enable_input_require_grads()
    model.train()
    observer = VolatilityObserver(model)
    ids, mask, labels = right_padded(sequences)
    with observer.capture(loss_weight=1 / 3):
        losses, counts = per_example_loss(model(input_ids=ids, attention_mask=mask).logits, labels)
        losses.mean().backward()
    observer.record([0, 1, 2], losses.detach(), counts)
    assert observer.observe(1).grad_norms.values() == pytest.approx(expected, rel=1e-4)


def test_short_sequences_take_the_gram_form_and_still_match():
    """T=3 tokens, in=64, r=4: T·(in+out) < in·out, so the hooks use ⟨aaᵀ, ggᵀ⟩."""
    from lorascope.trainer.observers.per_example_grads import direct_is_cheaper

    assert not direct_is_cheaper(3, 64, 4) and direct_is_cheaper(12, 64, 4)
    torch.manual_seed(7)
    sequences = [torch.randint(1, VOCAB, (3,)).tolist() for _ in range(3)]
    model = tiny_peft()
    expected, _ = reference_norms(model, sequences)
    observer = VolatilityObserver(model)
    ids, mask, labels = right_padded(sequences)
    with observer.capture(loss_weight=1 / 3):
        losses, counts = per_example_loss(model(input_ids=ids, attention_mask=mask).logits, labels)
        losses.mean().backward()
    observer.record([0, 1, 2], losses.detach(), counts)
    assert observer.observe(1).grad_norms.values() == pytest.approx(expected, rel=1e-4)
