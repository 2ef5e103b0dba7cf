"""Manual logit edits: turn "this token should have probability q here" into a training constraint.

An edit names (probe, position, token t, target probability q). Its target is the
model's own next-token distribution p at that position *when the edit is requested*,
with t set to q and every other token keeping its share of the rest:

    p'(t) = q,   p'(j) = p(j) · (1 − q) / (1 − p(t))   for j ≠ t

The target is fixed from then on. Each following step the loop adds
λ·KL(p' ‖ p_model) at that position to the loss, until the KL falls below the
edit's tolerance (achieved) or its step budget is spent (failed). Several edits
may be active at once; each reports its token probability, KL to target and the
collateral drift (change of every other probe's mean KL(base ‖ tuned) since the
edit began) as `EditUpdate` frames.

Why a KL tolerance, and why 0.05 nats: lumping the vocabulary into {t, not t} can
only lower a KL (data processing), so an achieved edit has binary KL(q ‖ p(t)) < τ
and, by Pinsker, |p(t) − q| ≤ √(τ/2) whatever q (0.16 for τ = 0.05; for q = 0.6
the binary bound gives p(t) in [0.44, 0.75]). The rest of the KL is the other
tokens' shares, which a LoRA that leaves the output head alone cannot keep
exactly while the training data pulls the other way: on the embedded model,
"The capital of France is" → " Lyon" at q = 0.6 with λ = 1 during training
(lr 3e-4 cosine, 60 steps) had p(t) within 0.6 ± 0.1 from its 9th step on, KL
under 0.05 at its 29th, and levelled off at KL ≈ 0.021 (p(t) 0.58) — so 0.02
would be reached only sometimes, 0.05 reliably. A larger λ lowers that level.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass, field
from typing import Any

import torch

from lorascope.protocol.frames import EditUpdate
from lorascope.protocol.tokens import display_token
from lorascope.trainer.edit_requests import (  # noqa: F401  (re-exported: the loop imports them from here)
    DEFAULT_BUDGET,
    DEFAULT_TOLERANCE,
    DEFAULT_WEIGHT,
    EditError,
    validate_edit_request,
)

COLLATERAL_EVERY = 5  # steps of an edit between two measurements of its collateral drift (and at its end)


# --------------------------------------------------------------------------- the target
def target_distribution(p: torch.Tensor, token_id: int, q: float) -> torch.Tensor:
    """p' from probabilities p (last dim = vocabulary): token_id gets q, the others share 1 − q as before.

    When p(t) = 1 the others have no share to keep (0/0): they split 1 − q evenly.
    """
    p = p.to(torch.float64)
    rest = p.clone()
    rest[..., token_id] = 0.0
    rest_mass = rest.sum(dim=-1, keepdim=True)
    uniform = torch.ones_like(rest)
    uniform[..., token_id] = 0.0
    uniform = uniform / uniform.sum(dim=-1, keepdim=True)
    shares = torch.where(rest_mass > 0, rest / rest_mass.clamp_min(1e-300), uniform)
    out = shares * (1.0 - q)
    out[..., token_id] = q
    return out


def target_log_distribution(logprobs: torch.Tensor, token_id: int, q: float) -> torch.Tensor:
    """log p' from log-probabilities, stable even when p(t) rounds to 1: shares come from a
    log-sum-exp over the other tokens instead of 1 − p(t). -inf where p' is 0 (q = 0 or q = 1)."""
    logprobs = logprobs.to(torch.float32)
    others = logprobs.clone()
    others[..., token_id] = -math.inf
    log_shares = others - torch.logsumexp(others, dim=-1, keepdim=True)
    out = log_shares + (math.log1p(-q) if q < 1.0 else -math.inf)
    out[..., token_id] = math.log(q) if q > 0.0 else -math.inf
    return out


def kl_to_target(target_logp: torch.Tensor, model_logp: torch.Tensor) -> torch.Tensor:
    """KL(p' ‖ p_model) over the last dim, with 0·log 0 = 0 where p' is 0."""
    target_p = target_logp.exp()
    terms = torch.where(target_p > 0, target_p * (target_logp - model_logp), torch.zeros_like(model_logp))
    return terms.sum(dim=-1)


# --------------------------------------------------------------------------- one edit
@dataclass
class Edit:
    """A validated edit and its progress. `target_logp` is None once the edit is finished."""

    edit_id: str
    probe_id: str
    position: int
    token_id: int
    token: str
    q: float
    weight: float
    tolerance: float
    budget: int
    start_step: int
    state: str = "requested"
    steps_used: int = 0
    p_token_start: float = 0.0
    p_token: float = 0.0
    kl: float = 0.0
    collateral_start: dict[str, float] = field(default_factory=dict)
    collateral: dict[str, float] = field(default_factory=dict)
    message: str = ""
    target_logp: torch.Tensor | None = None
    applied: bool = False  # aux loss went into the current step's backward

    def frame(self, step: int) -> EditUpdate:
        return EditUpdate(
            step=step,
            edit_id=self.edit_id,
            state=self.state,
            probe_id=self.probe_id,
            position=self.position,
            token_id=self.token_id,
            token=self.token,
            target_p=self.q,
            weight=self.weight,
            tolerance=self.tolerance,
            budget=self.budget,
            steps_used=self.steps_used,
            start_step=self.start_step,
            p_token=self.p_token,
            p_token_start=self.p_token_start,
            kl_to_target=self.kl,
            collateral=dict(self.collateral),
            message=self.message,
        )


# --------------------------------------------------------------------------- the manager
class EditManager:
    """All edits of a run: validation, the auxiliary loss, progress after each step, checkpoint state."""

    def __init__(self, model, tokenizer, probes, logit_observer=None):
        self.model = model
        self.tokenizer = tokenizer
        self.probes = probes
        self.logit_observer = logit_observer  # for collateral drift (mean KL(base‖tuned) per probe)
        self.edits: dict[str, Edit] = {}
        self.next_number = 1
        self._bytes_to_id: dict[bytes, int] | None = None

    # ----------------------------------------------------------------- requests
    def request(self, args: dict[str, Any], step: int) -> list[EditUpdate]:
        """Validate and start an edit; frames: requested, then active (or achieved if already met).

        Raises EditError naming every bad field; a refused request changes nothing.
        """
        spec = validate_edit_request(args, self.probes, self.tokenizer, self.vocab_size(), self._token_id_of)
        probe = self.probes.get(spec["probe_id"])
        with torch.no_grad():
            logp = self._probe_logprobs(probe.token_ids, grad=False)[spec["position"]]
        edit = Edit(
            edit_id=f"e{self.next_number}",
            start_step=step,
            token=self._display(spec["token_id"]),
            **spec,
        )
        edit.target_logp = target_log_distribution(logp, edit.token_id, edit.q)
        edit.p_token_start = edit.p_token = float(logp[edit.token_id].exp())
        edit.kl = float(kl_to_target(edit.target_logp, logp))
        edit.collateral_start = self._mean_kls()
        edit.message = f"target from p={edit.p_token_start:.4f} at step {step}"
        self.next_number += 1
        self.edits[edit.edit_id] = edit
        frames = [edit.frame(step)]
        if edit.kl < edit.tolerance:
            self._finish(edit, "achieved", f"already met: KL {edit.kl:.4g} < tolerance {edit.tolerance:g}")
        else:
            edit.state, edit.message = "active", ""
        frames.append(edit.frame(step))
        return frames

    def cancel(self, edit_id: Any, step: int) -> EditUpdate:
        """Stop an active edit. EditError for an unknown id or an edit that has already finished."""
        edit = self.edits.get(edit_id) if isinstance(edit_id, str) else None
        if edit is None:
            known = ", ".join(self.edits) or "none"
            raise EditError(f"edit_id: no edit {edit_id!r} (edits of this run: {known})")
        if edit.state not in ("requested", "active"):
            raise EditError(f"edit_id: edit {edit_id} is already {edit.state}")
        self._finish(edit, "cancelled", f"cancelled at step {step} after {edit.steps_used} step(s)")
        return edit.frame(step)

    def has_active(self) -> bool:
        return any(e.state == "active" for e in self.edits.values())

    # ----------------------------------------------------------------- training
    def aux_loss(self) -> torch.Tensor | None:
        """Σ λ·KL(p' ‖ p_model) over active edits, with grad; one forward per probe that has edits."""
        active = [e for e in self.edits.values() if e.state == "active"]
        if not active:
            return None
        total = None
        for probe_id, edits in _by_probe(active).items():
            logp = self._probe_logprobs(self.probes.get(probe_id).token_ids, grad=True)
            for edit in edits:
                kl = kl_to_target(edit.target_logp.to(logp.device), logp[edit.position])
                term = edit.weight * kl
                if not torch.isfinite(term):
                    continue  # never let one edit put NaN into the weights
                edit.applied = True
                total = term if total is None else total + term
        return total

    def after_step(self, step: int) -> list[EditUpdate]:
        """Measure each active edit after the optimizer step: achieved, failed (budget spent) or still active.

        Token probability and KL every step (one forward of the edited probe); collateral drift every
        COLLATERAL_EVERY steps of an edit and when it finishes, because it needs a forward of every
        probe (~20 % of a training step on the embedded model), and between those the frames carry
        the last measured drift.
        """
        active = [e for e in self.edits.values() if e.state == "active"]
        if not active:
            return []
        for probe_id, edits in _by_probe(active).items():
            with torch.no_grad():
                logp = self._probe_logprobs(self.probes.get(probe_id).token_ids, grad=False)
            for edit in edits:
                if edit.applied:
                    edit.steps_used += 1
                    edit.applied = False
                edit.message = ""  # e.g. the note of a previous run's end, once training on it goes on
                at = logp[edit.position]
                edit.p_token = float(at[edit.token_id].exp())
                edit.kl = float(kl_to_target(edit.target_logp.to(at.device), at))
        ending = {e.edit_id for e in active if e.kl < e.tolerance or e.steps_used >= e.budget}
        measure = [e for e in active if e.edit_id in ending or e.steps_used % COLLATERAL_EVERY == 0]
        now_kls = self._mean_kls() if measure else {}
        for edit in measure:
            edit.collateral = {
                pid: now_kls[pid] - start
                for pid, start in edit.collateral_start.items()
                if pid != edit.probe_id and pid in now_kls
            }
        frames = []
        for edit in active:
            if edit.kl < edit.tolerance:
                self._finish(edit, "achieved", f"KL {edit.kl:.4g} < tolerance {edit.tolerance:g} after {edit.steps_used} step(s)")
            elif edit.steps_used >= edit.budget:
                self._finish(edit, "failed", f"budget of {edit.budget} step(s) spent; KL {edit.kl:.4g} ≥ tolerance {edit.tolerance:g}")
            frames.append(edit.frame(step))
        return frames

    def at_run_end(self, step: int) -> list[EditUpdate]:
        """A last frame for each edit still active when the run ends: it stays active (a resume from the
        checkpoint goes on training it), and the message says so, so a replay does not leave it hanging."""
        frames = []
        for edit in self.edits.values():
            if edit.state == "active":
                edit.message = (f"run ended at step {step} after {edit.steps_used} of {edit.budget} step(s); "
                                "still active, a resume from the checkpoint goes on")
                frames.append(edit.frame(step))
        return frames

    # ----------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """JSON-able: every edit, with the fixed target of active ones as base64 float32 log-probs."""
        out = []
        for edit in self.edits.values():
            entry = {k: v for k, v in edit.__dict__.items() if k not in ("target_logp", "applied")}
            if edit.target_logp is not None:
                data = edit.target_logp.detach().to("cpu", torch.float32).contiguous().numpy().astype("<f4").tobytes()
                entry["target_logp"] = base64.b64encode(data).decode("ascii")
            out.append(entry)
        return {"version": 1, "next_number": self.next_number, "edits": out}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        import numpy as np

        self.edits = {}
        self.next_number = int(state.get("next_number", 1))
        for entry in state.get("edits", []):
            entry = dict(entry)
            encoded = entry.pop("target_logp", None)
            edit = Edit(**{k: v for k, v in entry.items() if k in Edit.__dataclass_fields__})
            if encoded is not None:
                values = np.frombuffer(base64.b64decode(encoded), dtype="<f4").copy()
                edit.target_logp = torch.from_numpy(values).to(self._device())
            elif edit.state in ("requested", "active"):
                edit.state, edit.message = "failed", "target missing from the checkpoint"
            self.edits[edit.edit_id] = edit

    # ----------------------------------------------------------------- internals
    def vocab_size(self) -> int:
        head = self.model.get_output_embeddings()
        if head is not None and hasattr(head, "out_features"):
            return int(head.out_features)
        return int(self.model.config.vocab_size)

    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _probe_logprobs(self, token_ids: list[int], grad: bool) -> torch.Tensor:
        """[T, V] float32 log-probs of the tuned model. Without grad: eval mode (no dropout), restored after."""
        ids = torch.tensor([token_ids], dtype=torch.long, device=self._device())
        if grad:
            return torch.log_softmax(self.model(input_ids=ids).logits[0].float(), dim=-1)
        was_training = self.model.training
        self.model.eval()
        try:
            return torch.log_softmax(self.model(input_ids=ids).logits[0].float(), dim=-1)
        finally:
            self.model.train(was_training)

    def _mean_kls(self) -> dict[str, float]:
        if self.logit_observer is None:
            return {}
        try:
            return {str(k): float(v) for k, v in self.logit_observer.mean_kls().items()}
        except Exception:  # collateral is a report, never a reason to stop training
            return {}

    def _finish(self, edit: Edit, state: str, message: str) -> None:
        edit.state, edit.message = state, message
        edit.target_logp = None  # frees V floats; a finished edit never trains again
        edit.applied = False

    def _token_bytes(self, token_id: int) -> bytes:
        try:
            from lorascope.trainer.token_bytes import token_bytes
        except ImportError:
            return self.tokenizer.decode([token_id]).encode("utf-8")
        return token_bytes(self.tokenizer, token_id)

    def _display(self, token_id: int) -> str:
        return display_token(self._token_bytes(token_id), fallback=str(token_id))

    def _token_id_of(self, text: str) -> tuple[int | None, list[str]]:
        """The id of the one token whose bytes are exactly `text`, else (None, the tokenization shown)."""
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        wanted = text.encode("utf-8")
        if len(ids) == 1 and self._token_bytes(ids[0]) == wanted:
            return ids[0], []
        if self._bytes_to_id is None:  # e.g. sentencepiece adds a prefix space when encoding alone
            self._bytes_to_id = {}
            for token_id in range(len(self.tokenizer)):
                self._bytes_to_id.setdefault(self._token_bytes(token_id), token_id)
        if wanted in self._bytes_to_id:
            return self._bytes_to_id[wanted], []
        return None, [self._display(i) for i in ids]


def _by_probe(edits: list[Edit]) -> dict[str, list[Edit]]:
    groups: dict[str, list[Edit]] = {}
    for edit in edits:
        groups.setdefault(edit.probe_id, []).append(edit)
    return groups
