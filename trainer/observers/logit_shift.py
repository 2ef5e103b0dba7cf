"""Logit-shift observer: what the adapter does to the model's token choices on fixed probes.

The base model is frozen, so its next-token distributions on the probes are
computed once, with peft's adapter-disable context. Every `every` steps the tuned
distributions are computed (eval mode, no grad) and compared per position:
KL(base‖tuned), both entropies, the union of base and tuned top-k with both
probabilities, and the tracked anchor tokens — never the full vocabulary, so a
frame stays a few kB. Position i is the distribution of the token after the
first i+1 probe tokens; the last position is what the model would say next.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

from lorascope.protocol.frames import AnchorInfo, LogitShifts, PositionShift, ProbeInfo, ProbeShift, TokenProb

from ..probes import ProbeSet
from ..token_bytes import token_bytes, token_text


@contextmanager
def evaluating(model):
    """Eval mode (no dropout) for a measurement, then back to whatever mode it was in."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


class LogitShiftObserver:
    def __init__(self, model, tokenizer, probes: ProbeSet, anchors: list[str] | None = None, every: int = 10, top_k: int = 5):
        if every < 1 or top_k < 1:
            raise ValueError("every and top_k must be >= 1")
        self.model = model
        self.tokenizer = tokenizer
        self.probes = probes
        self.every = every
        self.top_k = top_k
        self.anchor_ids: list[int] = []
        self.skipped_anchors: list[str] = []  # not a single token for this tokenizer
        for anchor in probes.anchors if anchors is None else anchors:
            ids = tokenizer(anchor, add_special_tokens=False)["input_ids"]
            if len(ids) == 1 and ids[0] not in self.anchor_ids:
                self.anchor_ids.append(int(ids[0]))
            elif len(ids) != 1:
                self.skipped_anchors.append(anchor)
        self._token_cache: dict[int, tuple[str, bytes]] = {}
        with torch.no_grad(), evaluating(model), model.disable_adapter():
            self._base = self._logprobs_all()
        # The base never changes: its probabilities, entropy and top-k are computed once.
        self._base_p = {pid: lp.exp() for pid, lp in self._base.items()}
        self._base_entropy = {pid: -(self._base_p[pid] * lp).sum(-1) for pid, lp in self._base.items()}
        self._base_top = {pid: lp.topk(min(top_k, lp.shape[-1]), dim=-1).indices for pid, lp in self._base.items()}

    # ------------------------------------------------------------------ distributions
    def _device(self):
        return next(p.device for p in self.model.parameters())

    def _logprobs_all(self) -> dict[str, torch.Tensor]:
        """log-softmax [T, V] for every probe in one right-padded batch (float32)."""
        device = self._device()
        probes = self.probes.probes
        longest = max(len(p.token_ids) for p in probes)
        pad_id = self.tokenizer.pad_token_id
        pad_id = 0 if pad_id is None else pad_id
        input_ids = torch.full((len(probes), longest), pad_id, dtype=torch.long)
        mask = torch.zeros((len(probes), longest), dtype=torch.long)
        for i, probe in enumerate(probes):
            input_ids[i, : len(probe.token_ids)] = torch.tensor(probe.token_ids)
            mask[i, : len(probe.token_ids)] = 1
        logits = self.model(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        return {p.probe_id: logprobs[i, : len(p.token_ids)].clone() for i, p in enumerate(probes)}

    def base_logprobs(self, probe_id: str) -> torch.Tensor:
        """[T, V] base log-probabilities of a probe (computed once, adapter disabled)."""
        return self._base[probe_id]

    def tuned_logprobs(self, probe_id: str) -> torch.Tensor:
        """[T, V] log-probabilities of a probe under the model as it is now (no grad, eval mode)."""
        probe = self.probes.get(probe_id)
        device = self._device()
        with torch.no_grad(), evaluating(self.model):
            logits = self.model(input_ids=torch.tensor([probe.token_ids], device=device)).logits
        return torch.log_softmax(logits[0].float(), dim=-1)

    def mean_kls(self) -> dict[str, float]:
        """Current mean KL(base‖tuned) per probe, nats (edits use it for collateral drift)."""
        with torch.no_grad(), evaluating(self.model):
            tuned = self._logprobs_all()
        kls = torch.stack([self._kl(pid, tuned[pid]).mean() for pid in self.probes.ids]).cpu().tolist()
        return dict(zip(self.probes.ids, kls))

    def _kl(self, probe_id: str, tuned: torch.Tensor) -> torch.Tensor:
        """KL(base‖tuned) per position, nats: Σ p_b·(log p_b − log p_t).

        Not −H_b − Σ p_b·log p_t: with H ≈ 10 nats and KL ≈ 0.01 that loses 1e-4 to cancellation.
        """
        return (self._base_p[probe_id] * (self._base[probe_id] - tuned)).sum(-1)

    # ------------------------------------------------------------------ frames
    def _token(self, token_id: int) -> tuple[str, bytes]:
        cached = self._token_cache.get(token_id)
        if cached is None:
            cached = (token_text(self.tokenizer, token_id), token_bytes(self.tokenizer, token_id))
            self._token_cache[token_id] = cached
        return cached

    def probe_infos(self) -> list[ProbeInfo]:
        infos = []
        for probe in self.probes:
            pairs = [self._token(i) for i in probe.token_ids]
            infos.append(
                ProbeInfo(
                    probe_id=probe.probe_id,
                    text=probe.text,
                    token_ids=list(probe.token_ids),
                    tokens=[text for text, _ in pairs],
                    token_bytes=[raw for _, raw in pairs],
                )
            )
        return infos

    def anchor_infos(self) -> list[AnchorInfo]:
        return [AnchorInfo(token_id=i, token=self._token(i)[0], token_bytes=self._token(i)[1]) for i in self.anchor_ids]

    def observe(self, step: int, force: bool = False) -> LogitShifts | None:
        """A frame when `step` is a multiple of `every` (or forced), else None."""
        if not force and step % self.every != 0:
            return None
        with torch.no_grad(), evaluating(self.model):
            tuned = self._logprobs_all()
            shifts = [self._probe_shift(pid, self._base[pid], tuned[pid]) for pid in self.probes.ids]
        return LogitShifts(step=step, probes=shifts, top_k=self.top_k)

    def _probe_shift(self, probe_id: str, base: torch.Tensor, tuned: torch.Tensor) -> ProbeShift:
        k = min(self.top_k, base.shape[-1])
        kl = self._kl(probe_id, tuned)
        entropy_base = self._base_entropy[probe_id]
        entropy_tuned = -(tuned.exp() * tuned).sum(-1)
        top_base = self._base_top[probe_id]
        top_tuned = tuned.topk(k, dim=-1).indices
        candidates = torch.cat([top_base, top_tuned], dim=-1)  # [T, 2k], unioned below
        anchors = torch.tensor(self.anchor_ids, dtype=torch.long, device=base.device)
        anchors = anchors.unsqueeze(0).expand(base.shape[0], -1)
        # Gather everything the frame needs, then one transfer to the host.
        gathered = torch.cat(
            [
                base.gather(-1, candidates).exp(),
                tuned.gather(-1, candidates).exp(),
                base.gather(-1, anchors).exp(),
                tuned.gather(-1, anchors).exp(),
                torch.stack([kl, entropy_base, entropy_tuned], dim=-1),
            ],
            dim=-1,
        ).cpu()
        candidates = candidates.cpu().tolist()
        n_a = len(self.anchor_ids)
        positions = []
        for t in range(base.shape[0]):
            row = gathered[t].tolist()
            p_base_c, p_tuned_c = row[: 2 * k], row[2 * k : 4 * k]
            p_base_a, p_tuned_a = row[4 * k : 4 * k + n_a], row[4 * k + n_a : 4 * k + 2 * n_a]
            kl_t, h_base, h_tuned = row[-3:]
            top: dict[int, TokenProb] = {}
            for j, token_id in enumerate(candidates[t]):
                if token_id not in top:
                    text, raw = self._token(token_id)
                    top[token_id] = TokenProb(token_id, text, p_base_c[j], p_tuned_c[j], raw)
            ordered = sorted(top.values(), key=lambda tp: -max(tp.p_base, tp.p_tuned))
            anchor_probs = [
                TokenProb(i, self._token(i)[0], p_base_a[j], p_tuned_a[j], self._token(i)[1])
                for j, i in enumerate(self.anchor_ids)
            ]
            positions.append(PositionShift(t, max(kl_t, 0.0), h_base, h_tuned, ordered, anchor_probs))
        mean_kl = sum(p.kl for p in positions) / max(len(positions), 1)
        return ProbeShift(probe_id=probe_id, positions=positions, mean_kl=mean_kl)

    # ------------------------------------------------------------------ continuations
    def continuation(self, probe_id: str, max_new_tokens: int = 20) -> tuple[str, str]:
        """Greedy continuations of a probe: (base with the adapter disabled, tuned)."""
        probe = self.probes.get(probe_id)
        input_ids = torch.tensor([probe.token_ids], device=self._device())
        pad_id = self.tokenizer.pad_token_id
        if pad_id is None:
            pad_id = self.tokenizer.eos_token_id

        def greedy() -> str:
            out = self.model.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=pad_id,
            )
            return self.tokenizer.decode(out[0, input_ids.shape[1] :], skip_special_tokens=True)

        with torch.no_grad(), evaluating(self.model):
            with self.model.disable_adapter():
                base_text = greedy()
            tuned_text = greedy()
        return base_text, tuned_text



