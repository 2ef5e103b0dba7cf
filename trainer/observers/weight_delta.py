"""Weight-delta observer: where LoRA changes the model, and how fast.

For an adapted Linear, ΔW = s·B·A (B: out×r, A: r×in, s = α/r, or α/√r with
rsLoRA — read from peft's `scaling` dict). Its Frobenius norm never needs ΔW:

    ‖s·B·A‖²_F = s²·trace((A·Aᵀ)(Bᵀ·B))          two r×r Grams, O(r²(in+out))

The change since the previous frame is the same trick at rank 2r. Written as
B₁A₁ − B₀A₀ = [B₁, B₁−B₀]·[A₁−A₀; A₀] every term is of the size of the change,
so a small step is not lost in the cancellation of two large norms (the
[B₁, B₀]·[A₁; −A₀] form subtracts ‖B₀A₀‖² from ‖B₁A₁‖² in effect). The r×r
products are done in float64: they are tiny, and float32 would cost digits.

All norms of a frame are stacked on the device and copied to the host once.
"""

from __future__ import annotations

import torch

from lorascope.protocol.frames import F32Array, WeightDeltas

from .lora_modules import adapted_linears


def _lowrank_sq_norm(B: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
    """‖B·A‖²_F = trace((A Aᵀ)(Bᵀ B)) = sum((A Aᵀ) ∘ (Bᵀ B)) (both Grams are symmetric)."""
    return ((A @ A.T) * (B.T @ B)).sum()


class WeightDeltaObserver:
    """‖ΔW‖_F per layer × adapted module: absolute, relative to ‖W₀‖_F, and since the last frame."""

    def __init__(self, model, every: int = 10, adapter: str = "default"):
        if every < 1:
            raise ValueError("every must be >= 1")
        self.every = every
        self.adapted, self.layers, self.modules = adapted_linears(model, adapter)
        if not self.adapted:
            raise ValueError("the model has no LoRA Linear layers to observe")
        shape = (len(self.layers), len(self.modules))
        self.shape = shape
        self._flat_index = torch.tensor([a.row * shape[1] + a.col for a in self.adapted])
        # ‖W₀‖_F once: the base weights are frozen. One transfer for all of them.
        with torch.no_grad():
            base_norms = torch.stack([self._base_norm(a) for a in self.adapted]).cpu()
        self._base_norms = base_norms
        self._previous = self._copy_adapters()
        self._previous_step = 0

    @staticmethod
    def _base_norm(adapted) -> torch.Tensor:
        weight = getattr(adapted.layer.get_base_layer(), "weight", None)
        if weight is None or not weight.dtype.is_floating_point:
            return torch.tensor(float("nan"), dtype=torch.float64, device=adapted.lora_A.weight.device)
        return torch.linalg.vector_norm(weight.detach(), dtype=torch.float64).to(adapted.lora_A.weight.device)

    def _copy_adapters(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(a.lora_A.weight.detach().clone(), a.lora_B.weight.detach().clone()) for a in self.adapted]

    def observe(self, step: int, force: bool = False) -> WeightDeltas | None:
        """A frame when `step` is a multiple of `every` (or forced), else None."""
        if not force and step % self.every != 0:
            return None
        with torch.no_grad():
            absolute_sq = []
            since_sq = []
            for adapted, (A0, B0) in zip(self.adapted, self._previous):
                A1 = adapted.lora_A.weight.detach().double()
                B1 = adapted.lora_B.weight.detach().double()
                A0 = A0.double()
                B0 = B0.double()
                s2 = adapted.scaling**2
                absolute_sq.append(s2 * _lowrank_sq_norm(B1, A1))
                B_stack = torch.cat([B1, B1 - B0], dim=1)  # out × 2r
                A_stack = torch.cat([A1 - A0, A0], dim=0)  # 2r × in
                since_sq.append(s2 * _lowrank_sq_norm(B_stack, A_stack))
            # the one device-to-host transfer of this frame
            both = torch.stack(absolute_sq + since_sq).clamp_min(0).sqrt().cpu()
        n = len(self.adapted)
        absolute = self._grid(both[:n])
        since_last = self._grid(both[n:])
        relative = self._grid(both[:n] / self._base_norms)
        frame = WeightDeltas(
            step=step,
            absolute=F32Array.from_values(absolute.tolist(), self.shape),
            relative=F32Array.from_values(relative.tolist(), self.shape),
            since_last=F32Array.from_values(since_last.tolist(), self.shape),
            since_step=self._previous_step,
        )
        self._previous = self._copy_adapters()
        self._previous_step = step
        return frame

    def _grid(self, values: torch.Tensor) -> torch.Tensor:
        """Scatter per-module values into the layers × modules grid; NaN where nothing is adapted."""
        grid = torch.full((self.shape[0] * self.shape[1],), float("nan"), dtype=torch.float64)
        grid[self._flat_index] = values.double()
        return grid.view(self.shape)
