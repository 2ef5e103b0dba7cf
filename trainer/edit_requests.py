"""Validation of one edit request (from the control socket, an edits file or the UI).

Every bad field is named in one message, so a person fixing a request fixes it
once. Nothing here touches the model: a refused request changes nothing.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from lorascope.trainer.edits import (
    DEFAULT_BUDGET,
    DEFAULT_TOLERANCE,
    DEFAULT_WEIGHT,
    IGNORED_FIELDS,
    REQUEST_FIELDS,
    EditError,
)


def validate_edit_request(
    args: Any,
    probes,
    tokenizer,
    vocab_size: int,
    token_id_of: Callable[[str], tuple[int | None, list[str]]],
) -> dict[str, Any]:
    """The request as {probe_id, position, token_id, q, weight, tolerance, budget}, or EditError.

    `token_id_of(text)` returns (id, []) for a string that is exactly one token,
    else (None, the tokens it splits into).
    """
    if not isinstance(args, dict):
        raise EditError(f"edit request must be a map of fields, got {type(args).__name__}")
    errors: list[str] = []
    unknown = [k for k in args if k not in REQUEST_FIELDS and k not in IGNORED_FIELDS]
    for key in unknown:
        errors.append(f"{key}: unknown field (expected {', '.join(REQUEST_FIELDS)})")

    # probe and position
    probe = None
    probe_id = args.get("probe_id")
    if probe_id is None:
        errors.append("probe_id: missing")
    elif not isinstance(probe_id, str):
        errors.append(f"probe_id: must be a string, got {probe_id!r}")
    else:
        try:
            probe = probes.get(probe_id)
        except KeyError:
            known = ", ".join(repr(p.probe_id) for p in probes.probes) or "none"
            errors.append(f"probe_id: no probe {probe_id!r} (probes: {known})")
    position = args.get("position")
    if position is None:
        position = len(probe.token_ids) - 1 if probe is not None else None
    elif not _is_int(position):
        errors.append(f"position: must be an integer, got {position!r}")
    elif probe is not None and not 0 <= position < len(probe.token_ids):
        errors.append(
            f"position: {position} is out of range for probe {probe.probe_id!r} "
            f"(0..{len(probe.token_ids) - 1}, {len(probe.token_ids)} tokens)"
        )

    # token
    token_id = None
    has_text, has_id = args.get("token") is not None, args.get("token_id") is not None
    if has_text and has_id:
        errors.append("token/token_id: give one of them, not both")
    elif not has_text and not has_id:
        errors.append("token: missing (give token, a string that is one token, or token_id)")
    elif has_id:
        value = args["token_id"]
        if not _is_int(value):
            errors.append(f"token_id: must be an integer, got {value!r}")
        elif not 0 <= value < vocab_size:
            errors.append(f"token_id: {value} is not in the vocabulary (0..{vocab_size - 1})")
        else:
            token_id = value
    else:
        text = args["token"]
        if not isinstance(text, str) or not text:
            errors.append(f"token: must be a non-empty string, got {text!r}")
        else:
            found, pieces = token_id_of(text)
            if found is None:
                errors.append(f"token: {text!r} is {len(pieces)} tokens: [{', '.join(repr(p) for p in pieces)}]")
            elif found >= vocab_size:
                errors.append(f"token: {text!r} is token {found}, outside the model's vocabulary (0..{vocab_size - 1})")
            else:
                token_id = found

    # numbers
    q = _number(args, "q", None, errors, lambda v: 0.0 <= v <= 1.0, "must be in [0, 1]")
    weight = _number(args, "weight", DEFAULT_WEIGHT, errors, lambda v: v > 0, "must be > 0")
    tolerance = _number(args, "tolerance", DEFAULT_TOLERANCE, errors, lambda v: v > 0, "must be > 0")
    budget = args.get("budget", DEFAULT_BUDGET)
    if budget is None:
        budget = DEFAULT_BUDGET
    elif not _is_int(budget) or budget < 1:
        errors.append(f"budget: must be an integer ≥ 1 (steps), got {budget!r}")

    if errors:
        raise EditError("; ".join(errors))
    return {
        "probe_id": probe_id,
        "position": int(position),
        "token_id": int(token_id),
        "q": float(q),
        "weight": float(weight),
        "tolerance": float(tolerance),
        "budget": int(budget),
    }


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(args: dict, name: str, default, errors: list[str], ok: Callable[[float], bool], rule: str):
    value = args.get(name)
    if value is None:
        if default is None:
            errors.append(f"{name}: missing")
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        errors.append(f"{name}: must be a number, got {value!r}")
        return default
    if not math.isfinite(value):
        errors.append(f"{name}: must be finite, got {value!r}")
        return default
    if not ok(value):
        errors.append(f"{name}: {rule}, got {value!r}")
        return default
    return value
