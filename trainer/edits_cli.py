"""`lorascope edit FILE`: send scripted manual logit edits to a running trainer, optionally follow them.

A control client only: no torch, so it runs on a laptop next to `lorascope watch`.
The file is JSONL (one edit per line) or a JSON list of edits, each

    {"at_step": 0, "probe_id": "capital-fr", "position": 4, "token": " Lyon", "q": 0.6,
     "weight": 1.0, "tolerance": 0.05, "budget": 50}

`at_step` (default 0) is when to send it; `position` defaults to the probe's last;
`token` (a string that is exactly one token) or `token_id`; weight, tolerance and
budget have the trainer's defaults. `lorascope train --edits FILE` reads the same
format through `load_edit_file`. With `--wait` the command follows the live stream
and prints each edit's token probability until it is achieved or failed.
On a short run give an edit room: with the embedded model and 40 steps of lr 3e-4
cosine, {"at_step": 2, "probe_id": "capital-fr", "token": " Lyon", "q": 0.6,
"tolerance": 0.1, "budget": 38} is achieved at step 22, while the same edit at
step 5 with the default tolerance 0.05 is still active at step 40 (KL 0.060).
Exit status: 0 every edit accepted (with --wait: achieved), 1 one failed or was
cancelled (or the run ended first), 2 one was refused.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

from lorascope.protocol.endpoints import DEFAULT_CONTROL
from lorascope.protocol.errors import UserError, read_user_text
from lorascope.trainer.edit_requests import check_edit_fields

FINAL_STATES = ("achieved", "failed", "cancelled")
FOLLOWED_KINDS = ("edit", "step", "status", "run_end")


# --------------------------------------------------------------------------- the file
def load_edit_file(path) -> list[dict[str, Any]]:
    """The edits of a file, in order, each a request dict plus "at_step" (default 0). UserError file:line: field."""
    return [edit for _, edit in load_edit_file_with_places(path)]


load_edits_file = load_edit_file  # the name the training loop imports


def load_edit_file_with_places(path) -> list[tuple[str, dict[str, Any]]]:
    """(where, edit) pairs, where = "file:line" of the edit, for messages about it later."""
    path = Path(path)
    text = read_user_text(path, "edits file")
    entries = _json_list(path, text) if text.lstrip().startswith("[") else _jsonl(path, text)
    out = []
    for where, edit in entries:
        errors = check_edit_fields(edit)
        at_step = edit.get("at_step", 0) if isinstance(edit, dict) else 0
        if isinstance(at_step, bool) or not isinstance(at_step, int) or at_step < 0:
            errors.append(f"at_step: must be an integer ≥ 0, got {at_step!r}")
        if errors:
            raise UserError(f"{where}: {'; '.join(errors)}")
        out.append((where, {**edit, "at_step": at_step}))
    if not out:
        raise UserError(f"{path}: no edits in the file")
    return out


def _jsonl(path: Path, text: str) -> list[tuple[str, Any]]:
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            entries.append((f"{path}:{number}", json.loads(line)))
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}:{number}: not JSON ({exc.msg} at column {exc.colno})") from None
    return entries


def _json_list(path: Path, text: str) -> list[tuple[str, Any]]:
    """Decode a JSON list element by element, so each edit keeps the line it starts on."""
    decoder = json.JSONDecoder()
    entries = []
    i = text.index("[") + 1
    while True:
        i = _skip_space(text, i)
        if i < len(text) and text[i] == "]" and not entries:
            break
        try:
            value, end = decoder.raw_decode(text, i)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}:{exc.lineno}: not JSON ({exc.msg} at column {exc.colno})") from None
        entries.append((f"{path}:{text.count(chr(10), 0, i) + 1}", value))
        i = _skip_space(text, end)
        if i < len(text) and text[i] == ",":
            i += 1
            continue
        if i < len(text) and text[i] == "]":
            break
        line = text.count("\n", 0, i) + 1
        raise UserError(f"{path}:{line}: expected ',' or ']' after an edit")
    rest = _skip_space(text, i + 1)
    if rest < len(text):
        raise UserError(f"{path}:{text.count(chr(10), 0, rest) + 1}: text after the closing ']'")
    return entries


def _skip_space(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i


# --------------------------------------------------------------------------- the command
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="edits, JSONL or a JSON list (format below)")
    parser.add_argument("--endpoint", default=DEFAULT_CONTROL, help="the trainer's control endpoint (default %(default)s)")
    parser.add_argument("--wait", action="store_true",
                        help="follow the run and print each edit's probability until it is achieved or failed")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds to wait for each reply (the trainer answers between steps; default %(default)s)")
    parser.add_argument("--curve-dir", "--curve-keys", dest="curve_keys", metavar="DIR", help="CurveZMQ key directory, for a trainer bound beyond loopback")
    parser.epilog = __doc__.split("\n\n", 1)[1]
    parser.formatter_class = argparse.RawDescriptionHelpFormatter


def run(args: argparse.Namespace) -> int:
    """0: every edit accepted (with --wait: achieved); 1: one failed or was cancelled; 2: one was refused."""
    from lorascope.protocol.transport import ControlClient, ControlError

    edits = load_edit_file_with_places(args.file)
    with ControlClient(args.endpoint, curve_dir=args.curve_keys) as client:
        try:
            hello = client.request("hello", timeout=min(args.timeout, 10.0))
        except ControlError as exc:
            raise UserError(f"{args.endpoint}: {exc}") from None
        scheduled = any(edit["at_step"] > 0 for _, edit in edits)
        if not (args.wait or scheduled):
            return _send_all(client, edits, args.timeout)
    return _send_and_follow(hello, edits, args)


def _request_fields(edit: dict) -> dict:
    return {k: v for k, v in edit.items() if k != "at_step" and v is not None}


def _send_all(client, edits, timeout: float) -> int:
    from lorascope.protocol.transport import ControlError

    refused = 0
    for where, edit in edits:
        try:
            reply = client.request("edit", timeout=timeout, **_request_fields(edit))
        except ControlError as exc:
            print(f"{where}: refused: {exc}")
            refused += 1
            continue
        print(f"{where}: {_describe(edit)} → {reply.get('edit_id', '?')} {reply.get('state', '')}"
              f" (p={_p(reply.get('p_token'))}, KL {_p(reply.get('kl_to_target'))})")
    return 2 if refused else 0


def _send_and_follow(hello: dict, edits, args) -> int:
    """Send each edit once the run reaches its at_step; with --wait follow ours to a final state."""
    from lorascope.protocol.frames import EditUpdate, RunEnd, StepMetrics
    from lorascope.protocol.transport import ControlReply, LiveFeed

    pending = sorted(edits, key=lambda e: e[1]["at_step"])
    sent: dict[int, tuple[str, dict, float]] = {}  # request id -> (where, edit, time sent)
    ours: dict[str, tuple[str, str]] = {}  # edit id -> (where, last state printed)
    latest: dict[str, Any] = {}  # edit id -> newest EditUpdate seen, ours or not (yet)
    refused = failed = 0
    step = 0
    feed = LiveFeed(hello["pub_endpoint"], args.endpoint, kinds=FOLLOWED_KINDS, curve_dir=args.curve_keys)
    try:
        while True:
            for item in feed.poll(200):
                if isinstance(item, ControlReply):
                    where, edit, _ = sent.pop(item.id, (None, None, 0.0))
                    if where is None:
                        continue
                    if not item.ok:
                        print(f"{where}: refused: {item.error}")
                        refused += 1
                    else:
                        edit_id = item.data.get("edit_id", "?")
                        print(f"{where}: {_describe(edit)} → {edit_id} (p={_p(item.data.get('p_token'))})")
                        # its frames may have come in before the reply: start from the newest state known
                        seen = latest.get(edit_id)
                        ours[edit_id] = (where, seen.state if seen is not None else item.data.get("state", ""))
                        if seen is not None and seen.state in FINAL_STATES:
                            print(_progress_line(seen), flush=True)
                            failed += seen.state != "achieved"
                elif isinstance(item, StepMetrics):
                    step = max(step, item.step)
                elif isinstance(item, EditUpdate):
                    latest[item.edit_id] = item
                    if item.edit_id not in ours:
                        continue
                    where, last = ours[item.edit_id]
                    if last in FINAL_STATES:
                        continue
                    print(_progress_line(item), flush=True)
                    ours[item.edit_id] = (where, item.state)
                    if item.state in ("failed", "cancelled"):
                        failed += 1
                elif isinstance(item, RunEnd):
                    if pending or sent or _open(ours):
                        print(f"run ended ({item.reason}) at step {item.step} before every edit finished")
                        return 2 if refused else 1
                    return 2 if refused else 1 if failed else 0
            while pending and pending[0][1]["at_step"] <= step and feed.state == "live":
                where, edit = pending.pop(0)
                sent[feed.send("edit", **_request_fields(edit))] = (where, edit, time.monotonic())
            for req_id, (where, _, t_sent) in list(sent.items()):
                if time.monotonic() - t_sent > args.timeout:
                    print(f"{where}: no reply within {args.timeout:g} s")
                    refused += 1
                    del sent[req_id]
            if not pending and not sent and (not args.wait or not _open(ours)):
                return 2 if refused else 1 if failed else 0
            if feed.state == "disconnected":
                raise UserError(f"lost the trainer at {args.endpoint} ({feed.error or 'no reply'})")
    finally:
        feed.close()


def _open(ours: dict) -> bool:
    return any(state not in FINAL_STATES for _, state in ours.values())


def _describe(edit: dict) -> str:
    token = repr(edit["token"]) if edit.get("token") is not None else f"token {edit['token_id']}"
    at = f"[{edit['position']}]" if edit.get("position") is not None else ""
    return f"{edit['probe_id']}{at} {token} → q={edit['q']:g}"


def _progress_line(frame) -> str:
    line = (f"{frame.edit_id} step {frame.step:>5}  {frame.state:<9} p({frame.token!r})={frame.p_token:.4f}"
            f" → {frame.target_p:g}  KL {frame.kl_to_target:.4f}  steps {frame.steps_used}/{frame.budget}")
    if frame.state in FINAL_STATES and frame.collateral:
        drift = ", ".join(f"{pid} {v:+.4f}" for pid, v in sorted(frame.collateral.items()))
        line += f"\n    collateral drift (Δ mean KL base‖tuned): {drift}"
    if frame.state in FINAL_STATES and frame.message:
        line += f"\n    {frame.message}"
    return line


def _p(value) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) and math.isfinite(value) else "?"
