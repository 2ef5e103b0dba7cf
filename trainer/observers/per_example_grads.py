"""Per-example gradient norms of LoRA weights from the training step's own backward.

A forward hook on each lora_A / lora_B Linear registers a tensor hook on the
layer's output; in the backward that hook receives g = ∂L/∂z for the whole
batch, and the layer's input a is still at hand. For a Linear z = a·Wᵀ the
gradient of example i is Gᵢ = Σₜ gᵢₜᵀ aᵢₜ, and its squared norm is either formed
directly (B·T·out·in multiply-adds, an out×in matrix per example) or via the
Gram identity ‖gᵢᵀaᵢ‖² = ⟨aᵢaᵢᵀ, gᵢgᵢᵀ⟩ (B·T²·(in+out), two T×T matrices):
whichever is cheaper for the layer's shapes. For LoRA (r small) the direct form
usually wins; the Gram form wins for short sequences. Module full-backward hooks
would do the same but cost ~26 % of a step; tensor hooks cost a few percent.

The norms accumulate on the device; nothing here synchronises with the host.
"""

from __future__ import annotations

import torch


def sq_norms_direct(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """[B] squared Frobenius norms of Gᵢ = gᵢᵀ aᵢ, with a: [B, T, in], g: [B, T, out].

    ‖gᵀa‖ = ‖aᵀg‖: the product is formed with the narrow side (LoRA's r) as the
    transposed operand, so the wide one is read contiguously — measured on one CPU
    thread, 4×128 tokens, r=8, out=1536: 0.27 ms instead of 1.0–1.4 ms (einsum).
    """
    if a.shape[2] <= g.shape[2]:
        product = torch.bmm(a.transpose(1, 2), g)
    else:
        product = torch.bmm(g.transpose(1, 2), a)
    return product.square().sum(dim=(1, 2))


def sq_norms_gram(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """[B] squared norms via ⟨a aᵀ, g gᵀ⟩ (T×T Grams per example)."""
    return (torch.bmm(a, a.transpose(1, 2)) * torch.bmm(g, g.transpose(1, 2))).sum(dim=(1, 2))


def direct_is_cheaper(tokens: int, d_in: int, d_out: int) -> bool:
    """Direct costs T·out·in per example, Gram T²·(in+out): compare."""
    return d_out * d_in <= tokens * (d_in + d_out)


class PerExampleGradNorms:
    """Hooks on LoRA Linears that add up per-example squared gradient norms during backward."""

    def __init__(self, linears):
        self.linears = list(linears)  # the nn.Linear modules lora_A[...] / lora_B[...]
        self.enabled = False  # forward hooks register tensor hooks only while enabled
        self.sq: torch.Tensor | None = None  # [B] running sum over layers, on the device
        self._handles = [m.register_forward_hook(self._forward_hook) for m in self.linears]

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def take(self) -> torch.Tensor | None:
        """The accumulated [B] squared norms since the last take (None if no hook fired)."""
        sq, self.sq = self.sq, None
        return sq

    def _forward_hook(self, module, inputs, output):
        if not self.enabled or not torch.is_grad_enabled() or not output.requires_grad:
            return
        a = inputs[0].detach()
        has_bias = getattr(module, "bias", None) is not None and module.bias.requires_grad

        def on_grad(g: torch.Tensor):
            if not self.enabled:
                return
            with torch.no_grad():
                self._accumulate(a, g, has_bias)

        output.register_hook(on_grad)

    def _accumulate(self, a: torch.Tensor, g: torch.Tensor, has_bias: bool) -> None:
        if a.dim() == 2:  # [B, in]: one token per example
            a, g = a.unsqueeze(1), g.unsqueeze(1)
        elif a.dim() > 3:  # [B, ..., in]: fold the middle dims into tokens
            a, g = a.flatten(1, -2), g.flatten(1, -2)
        a = a.float()
        g = g.float()
        tokens, d_in, d_out = a.shape[1], a.shape[2], g.shape[2]
        sq = sq_norms_direct(a, g) if direct_is_cheaper(tokens, d_in, d_out) else sq_norms_gram(a, g)
        if has_bias:
            sq = sq + g.sum(dim=1).square().sum(dim=1)
        if self.sq is None or self.sq.shape != sq.shape:
            self.sq = sq
        else:
            self.sq = self.sq + sq
