"""Finding the LoRA-adapted Linear layers of a peft model and labelling them layer × module."""

from __future__ import annotations

import re
from dataclasses import dataclass

_LAYER_INDEX = re.compile(r"\.(\d+)\.")


@dataclass
class AdaptedLinear:
    """One peft LoRA Linear: where it sits in the heatmap and its adapter's pieces."""

    name: str  # full module name in the model
    row: int  # index into layers
    col: int  # index into modules
    layer: object  # the peft LoraLayer
    lora_A: object  # nn.Linear in -> r
    lora_B: object  # nn.Linear r -> out
    scaling: float


def adapted_linears(model, adapter: str = "default") -> tuple[list[AdaptedLinear], list[str], list[str]]:
    """(adapted layers, layer labels, module labels) for a peft model.

    Rows are the transformer blocks ("0".."N-1", from the block index in the module
    name); columns the adapted module names (q_proj, ...) in order of first
    appearance. Where the last name component is ambiguous (GPT-2's attn.c_proj and
    mlp.c_proj) the column keeps its parent too.
    """
    found = []
    for name, module in model.named_modules():
        lora_A = getattr(module, "lora_A", None)
        if lora_A is None or not hasattr(lora_A, "keys") or adapter not in lora_A.keys():
            continue
        if not hasattr(lora_A[adapter], "weight"):
            continue
        found.append((name, module))
    short = {name: name.rsplit(".", 1)[-1] for name, _ in found}
    parents_by_short: dict[str, set[str]] = {}
    for name, _ in found:
        parents_by_short.setdefault(short[name], set()).add(_parent_kind(name))
    layers: list[str] = []
    modules: list[str] = []
    placed = []
    for name, module in found:
        col_label = short[name]
        if len(parents_by_short[col_label]) > 1:
            col_label = f"{_parent_kind(name)}.{col_label}"
        numbers = _LAYER_INDEX.findall(name + ".")
        row_label = numbers[-1] if numbers else "-"
        if row_label not in layers:
            layers.append(row_label)
        if col_label not in modules:
            modules.append(col_label)
        placed.append((name, module, row_label, col_label))
    layers.sort(key=lambda s: (not s.isdigit(), int(s) if s.isdigit() else 0, s))
    row_of = {label: i for i, label in enumerate(layers)}
    col_of = {label: i for i, label in enumerate(modules)}
    result = [
        AdaptedLinear(
            name=name,
            row=row_of[row_label],
            col=col_of[col_label],
            layer=module,
            lora_A=module.lora_A[adapter],
            lora_B=module.lora_B[adapter],
            scaling=float(module.scaling[adapter]),
        )
        for name, module, row_label, col_label in placed
    ]
    return result, layers, modules


def _parent_kind(name: str) -> str:
    parts = name.split(".")
    return parts[-2] if len(parts) >= 2 else ""
