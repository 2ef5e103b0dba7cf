"""Validation of one edit request (from the control socket, an edits file or the UI).

Every bad field is named in one message, so a person fixing a request fixes it
once. Nothing here touches the model (nor imports torch: `lorascope edit` checks
a file with `check_edit_fields` on a laptop): a refused request changes nothing.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from lorascope.protocol.errors import UserError

DEFAULT_WEIGHT = 1.0
DEFAULT_TOLERANCE = 0.05  # nats; |p(t) − q| ≤ √(τ/2) ≈ 0.16 once achieved, in practice much closer (see edits.py)
DEFAULT_BUDGET = 50  # steps
MAX_WEIGHT = 1000.0  # a larger λ can overflow the gradients to inf, and clipping turns inf into NaN weights
REQUEST_FIELDS = ("probe_id", "position", "token", "token_id", "q", "weight", "tolerance", "budget")
IGNORED_FIELDS = ("at_step",)  # scheduling field of an edits file: the caller already acted on it


class EditError(UserError):
    """A bad edit request or cancel: the message names every bad field. Nothing was changed."""


def check_edit_fields(args: Any) -> list[str]:
    """Errors in the fields of a request that need no model: names, types, ranges. [] when fine."""
    if not isinstance(args, dict):
        return [f"edit request must be a map of fields, got {type(args).__name__}"]
    errors: list[str] = []
    for key in args:
        if key not in REQUEST_FIELDS and key not in IGNORED_FIELDS:
            errors.append(f"{key}: unknown field (expected {', '.join(REQUEST_FIELDS)})")
    probe_id = args.get("probe_id")
    if probe_id is None:
        errors.append("probe_id: missing")
    elif not isinstance(probe_id, str) or not probe_id:
        errors.append(f"probe_id: must be a non-empty string, got {probe_id!r}")
    position = args.get("position")
    if position is not None and (not _is_int(position) or position < 0):
        errors.append(f"position: must be an integer ≥ 0, got {position!r}")
    has_text, has_id = args.get("token") is not None, args.get("token_id") is not None
    if has_text and has_id:
        errors.append("token/token_id: give one of them, not both")
    elif not has_text and not has_id:
        errors.append("token: missing (give token, a string that is one token, or token_id)")
    elif has_id and (not _is_int(args["token_id"]) or args["token_id"] < 0):
        errors.append(f"token_id: must be an integer ≥ 0, got {args['token_id']!r}")
    elif has_text and (not isinstance(args["token"], str) or not args["token"]):
        errors.append(f"token: must be a non-empty string, got {args['token']!r}")
    _number(args, "q", None, errors, lambda v: 0.0 <= v <= 1.0, "must be in [0, 1]")
    _number(args, "weight", DEFAULT_WEIGHT, errors, lambda v: 0 < v <= MAX_WEIGHT, f"must be in (0, {MAX_WEIGHT:g}]")
    _number(args, "tolerance", DEFAULT_TOLERANCE, errors, lambda v: v > 0, "must be > 0")
    budget = args.get("budget")
    if budget is not None and (not _is_int(budget) or budget < 1):
        errors.append(f"budget: must be an integer ≥ 1 (steps), got {budget!r}")
    return sorted(errors, key=_field_order)


def validate_edit_request(
    args: Any,
    probes,
    tokenizer,
    vocab_size: int,
    token_id_of: Callable[[str], tuple[int | None, list[str]]],
) -> dict[str, Any]:
    """The request as {probe_id, position, token_id, q, weight, tolerance, budget}, or EditError.

    `token_id_of(text)` returns (id, []) for a string that is exactly one token,
    else (None, the tokens it splits into). Position defaults to the probe's last.
    """
    errors = check_edit_fields(args)
    if not isinstance(args, dict):
        raise EditError(errors[0])
    bad = {e.split(":", 1)[0] for e in errors}

    probe = None
    probe_id = args.get("probe_id")
    if "probe_id" not in bad:
        try:
            probe = probes.get(probe_id)
        except KeyError:
            known = ", ".join(repr(p.probe_id) for p in probes.probes) or "none"
            errors.append(f"probe_id: no probe {probe_id!r} (probes: {known})")
    position = args.get("position")
    if position is None and probe is not None:
        position = len(probe.token_ids) - 1
    elif probe is not None and "position" not in bad and not position < len(probe.token_ids):
        errors.append(
            f"position: {position} is out of range for probe {probe.probe_id!r} "
            f"(0..{len(probe.token_ids) - 1}, {len(probe.token_ids)} tokens)"
        )

    token_id = None
    if not bad & {"token", "token_id", "token/token_id"}:
        if args.get("token_id") is not None:
            token_id = args["token_id"]
            if token_id >= vocab_size:
                errors.append(f"token_id: {token_id} is not in the vocabulary (0..{vocab_size - 1})")
        else:
            text = args["token"]
            token_id, pieces = token_id_of(text)
            if token_id is None:
                errors.append(f"token: {text!r} is {len(pieces)} tokens: [{', '.join(repr(p) for p in pieces)}]")
            elif token_id >= vocab_size:
                errors.append(f"token: {text!r} is token {token_id}, outside the model's vocabulary (0..{vocab_size - 1})")

    if errors:
        raise EditError("; ".join(sorted(errors, key=_field_order)))
    return {
        "probe_id": probe_id,
        "position": int(position),
        "token_id": int(token_id),
        "q": float(args["q"]),
        "weight": float(_or(args.get("weight"), DEFAULT_WEIGHT)),
        "tolerance": float(_or(args.get("tolerance"), DEFAULT_TOLERANCE)),
        "budget": int(_or(args.get("budget"), DEFAULT_BUDGET)),
    }


def _field_order(error: str) -> int:
    """Errors in the order of the request's fields, unknown fields last."""
    name = error.split(":", 1)[0].split("/", 1)[0]
    return REQUEST_FIELDS.index(name) if name in REQUEST_FIELDS else len(REQUEST_FIELDS)


def _or(value, default):
    return default if value is None else value


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
