"""Volatility observer: which training examples jolt the model, and which fit what it knew.

Per optimizer step (all its micro-batches): each example's loss, the norm of its
own gradient over the LoRA parameters (from the step's single backward, see
per_example_grads.py), its loss-token count; the dispersion of the gradient
norms (coefficient of variation); a rolling baseline of the dispersion; and
spikes — examples whose loss or gradient norm stands out (robust z-score of the
log value against the rolling window of earlier examples and the step's others).

Loop usage (each micro-batch, then once per optimizer step):

    with vol.capture(loss_weight=1 / (batch_size * grad_accum)):
        logits = model(...).logits
        losses, counts = per_example_loss(logits, labels)
        (losses.mean() / grad_accum).backward()
    vol.record(example_ids, losses.detach(), counts)
    ...optimizer step...
    vol.record_after(example_ids, losses_after)   # optional loss sensitivity
    frame = vol.observe(step)

Loss sensitivity (optional, off unless the loop asks): after the optimizer step,
run the same micro-batch again without grad (`losses_after, _ =
per_example_loss(model(...).logits, labels)`) and pass it to `record_after`; the
frame's `sensitivity` is loss after minus loss before, per example (negative =
the step helped that example).
"""

from __future__ import annotations

import math
from collections import deque
from contextlib import contextmanager

import torch
import torch.nn.functional as F

from lorascope.protocol.frames import F32Array, Spike, Volatility

from .lora_modules import adapted_linears
from .per_example_grads import PerExampleGradNorms

MIN_REFERENCE = 8  # examples needed before anything can be called a spike (fewer: too noisy)
MIN_LOG_SCALE = 0.1  # floor of the robust spread (log units): identical norms must not make noise spikes
MAX_SPIKES = 8  # per frame, highest scores first
SNIPPET_CHARS = 240


def per_example_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(losses[B], token_counts[B]): each example's mean next-token loss over its own loss tokens.

    Shifted by one (position t predicts token t+1); labels of -100 are ignored;
    computed in float32. An example with no loss tokens gets loss 0 and count 0.
    """
    shifted_logits = logits[:, :-1, :].float()
    shifted_labels = labels[:, 1:].to(shifted_logits.device)
    token_losses = F.cross_entropy(
        shifted_logits.reshape(-1, shifted_logits.shape[-1]),
        shifted_labels.reshape(-1),
        ignore_index=-100,
        reduction="none",
    ).view(shifted_labels.shape)
    counts = (shifted_labels != -100).sum(dim=1)
    losses = token_losses.sum(dim=1) / counts.clamp_min(1).to(token_losses.dtype)
    return losses, counts


class VolatilityObserver:
    def __init__(self, model, every: int = 1, window: int = 50, spike_score: float = 3.0, snippet=None,
                 adapter: str = "default", gather=None):
        """`gather`, under several processes: a collective that takes this rank's [k, n] float64
        table (on the device) and returns every rank's, concatenated along dim 1 — with
        accelerate, `lambda t: accelerator.gather(t.T.contiguous()).T` (equal batch sizes on
        every rank, as BatchPlan gives). Then every rank must call `observe` every step."""
        if every < 1 or window < 1:
            raise ValueError("every and window must be >= 1")
        self.every = every
        self.window = window
        self.spike_score = spike_score
        self.snippet = snippet
        self.gather = gather
        adapted, _, _ = adapted_linears(model, adapter)
        if not adapted:
            raise ValueError("the model has no LoRA Linear layers to observe")
        linears = [m for a in adapted for m in (a.lora_A, a.lora_B)]
        self._grads = PerExampleGradNorms(linears)
        self._paused = 0
        self._measure_next = True  # is the coming step one this observer reports?
        self._pending: list[tuple[list[int], torch.Tensor, torch.Tensor, torch.Tensor | None]] = []
        self._after_pending: list[tuple[list[int], torch.Tensor]] = []
        self._history: deque[list[tuple[float, float]]] = deque(maxlen=window)  # per step: (log loss, log grad norm)
        self._dispersions: deque[float] = deque(maxlen=window)
        self._loss_weight = 1.0
        # example id -> latest figures, for an exportable table (curriculum ordering)
        self.examples: dict[int, dict] = {}

    def close(self) -> None:
        self._grads.remove()

    # ------------------------------------------------------------------ capture
    @contextmanager
    def capture(self, loss_weight: float):
        """Measure per-example grad norms in the forward+backward inside this block.

        `loss_weight`: each example's loss enters the backward as loss_i * loss_weight
        (1 / (batch * grad_accum) for a mean over the batch divided by the accumulation).
        """
        if not loss_weight > 0:
            raise ValueError("loss_weight must be > 0")
        self._loss_weight = float(loss_weight)
        self._grads.take()
        self._grads.enabled = self._measure_next and not self._paused
        try:
            yield self
        finally:
            self._grads.enabled = False

    @contextmanager
    def paused(self):
        """Hooks inactive inside (an auxiliary backward must not count as the examples')."""
        self._paused += 1
        was = self._grads.enabled
        self._grads.enabled = False
        try:
            yield
        finally:
            self._paused -= 1
            self._grads.enabled = was and not self._paused

    def record(self, example_ids: list[int], losses: torch.Tensor, token_counts: torch.Tensor) -> None:
        """After a micro-batch's backward: its examples, their losses and loss-token counts."""
        sq = self._grads.take()
        if sq is not None:
            sq = sq.detach() / (self._loss_weight**2)
            if sq.shape[0] != len(example_ids):
                sq = None  # the hooks saw another batch shape (e.g. a packed batch): no norms, no guess
        self._pending.append((list(example_ids), losses.detach().float(), token_counts.detach(), sq))

    def record_after(self, example_ids: list[int], losses_after: torch.Tensor) -> None:
        """Optional: the same examples' losses after the optimizer step (loss sensitivity)."""
        self._after_pending.append((list(example_ids), losses_after.detach().float()))

    # ------------------------------------------------------------------ per step
    def observe(self, step: int, force: bool = False) -> Volatility | None:
        """Aggregate the step's micro-batches into a frame (every `every` steps, or forced).

        Call it after every optimizer step: it also decides whether the next step's
        backward is measured (hooks stay off on steps that are not reported).
        """
        pending, self._pending = self._pending, []
        after_pending, self._after_pending = self._after_pending, []
        report = force or step % self.every == 0
        self._measure_next = (step + 1) % self.every == 0
        if not report or not pending:
            return None
        ids_local = [i for batch_ids, *_ in pending for i in batch_ids]
        device = pending[0][1].device
        columns = []
        for batch_ids, losses, counts, sq in pending:
            norms = sq.sqrt() if sq is not None else torch.full((len(batch_ids),), float("nan"), device=device)
            columns.append(torch.stack([
                torch.tensor(batch_ids, dtype=torch.float64, device=device),
                losses.double().to(device), norms.double().to(device), counts.double().to(device),
            ]))
        table = torch.cat(columns, dim=1)  # [4, n]: id, loss, grad norm, tokens
        after = torch.full((len(ids_local),), float("nan"), dtype=torch.float64, device=device)
        where = {example_id: j for j, example_id in enumerate(ids_local)}
        for batch_ids, losses_after in after_pending:
            known = [(where[i], k) for k, i in enumerate(batch_ids) if i in where]
            if known:
                rows, picks = zip(*known)
                after[list(rows)] = losses_after.double().to(device)[list(picks)]
        table = torch.cat([table, after.view(1, -1)])  # [5, n]: + loss after the step
        if self.gather is not None:  # every rank's examples, in rank order (a collective: all ranks call observe)
            table = self.gather(table)
        host = table.cpu()  # one device-to-host transfer per frame
        ids = [int(i) for i in host[0].tolist()]
        n = len(ids)
        losses = host[1].tolist()
        norms = host[2].tolist()
        counts = [int(c) for c in host[3].tolist()]
        after_host = host[4].tolist()
        dispersion = _coefficient_of_variation(norms)
        spikes = self._spikes(ids, losses, norms, counts)
        self._history.append([(_log(l), _log(g)) for l, g in zip(losses, norms)])
        if not math.isnan(dispersion):
            self._dispersions.append(dispersion)
        baseline = sum(self._dispersions) / len(self._dispersions) if self._dispersions else 0.0
        for example_id, loss, norm, count in zip(ids, losses, norms, counts):
            self.examples[example_id] = {"loss": loss, "grad_norm": norm, "tokens": count, "step": step}
        sensitivity = None
        if after_pending:
            sensitivity = F32Array.from_values([a - l for a, l in zip(after_host, losses)], (n,))
        return Volatility(
            step=step,
            example_ids=ids,
            losses=F32Array.from_values(losses, (n,)),
            grad_norms=F32Array.from_values(norms, (n,)),
            token_counts=counts,
            dispersion=0.0 if math.isnan(dispersion) else dispersion,
            baseline=baseline,
            spikes=spikes,
            sensitivity=sensitivity,
            # A calm step has no spikes to carry text; a watcher still wants to read what moved the adapter most.
            snippets=[self._snippet(i) for i in ids],
        )

    def _spikes(self, ids, losses, norms, counts) -> list[Spike]:
        earlier = [pair for step in self._history for pair in step]
        current = [(_log(l), _log(g)) for l, g in zip(losses, norms)]
        found = []
        for j, (log_loss, log_norm) in enumerate(current):
            reference = earlier + current[:j] + current[j + 1 :]
            score = max(
                _robust_z(log_norm, [g for _, g in reference]),
                _robust_z(log_loss, [l for l, _ in reference]),
            )
            if score >= self.spike_score:
                found.append((score, j))
        found.sort(reverse=True)
        return [
            Spike(ids[j], losses[j], norms[j], score, counts[j], self._snippet(ids[j])) for score, j in found[:MAX_SPIKES]
        ]

    def _snippet(self, example_id: int) -> str:
        if self.snippet is None:
            return ""
        try:
            text = str(self.snippet(example_id))
        except Exception:  # a snippet is a courtesy: never fail a step for it
            return ""
        text = " ".join(text.split())
        return text if len(text) <= SNIPPET_CHARS else text[: SNIPPET_CHARS - 1] + "…"


def _log(x: float) -> float:
    return math.log(x) if x > 0 and math.isfinite(x) else float("nan")


def _robust_z(value: float, reference: list[float]) -> float:
    """(value − median) / (1.4826·MAD), on finite values; 0 when there is too little to judge."""
    reference = [r for r in reference if math.isfinite(r)]
    if not math.isfinite(value) or len(reference) < MIN_REFERENCE:
        return 0.0
    median = _median(reference)
    mad = _median([abs(r - median) for r in reference])
    return (value - median) / max(1.4826 * mad, MIN_LOG_SCALE)


def _median(values: list[float]) -> float:
    s = sorted(values)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else 0.5 * (s[mid - 1] + s[mid])


def _coefficient_of_variation(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    if len(finite) < 2:
        return float("nan")
    mean = sum(finite) / len(finite)
    if mean <= 0:
        return float("nan")
    var = sum((v - mean) ** 2 for v in finite) / (len(finite) - 1)
    return math.sqrt(var) / mean
