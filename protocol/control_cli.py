"""`lorascope control CMD`: one control request to a running trainer; prints the reply."""

from __future__ import annotations

import argparse
import json

import msgpack

from .control import LOOP_COMMANDS, ControlClient, ControlError
from .endpoints import DEFAULT_CONTROL
from .errors import UserError

# edit/cancel_edit/continue take structured arguments: `lorascope edit` and the UI send those.
# `status` is a command the trainer adds (ControlServer extra_commands).
COMMANDS = ("hello", "ping", "snapshot", "status") + tuple(c for c in LOOP_COMMANDS if c not in ("edit", "cancel_edit", "continue"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("cmd", metavar="CMD", choices=COMMANDS, help=f"one of: {', '.join(COMMANDS)}")
    parser.add_argument("--endpoint", default=DEFAULT_CONTROL, help="the trainer's control endpoint (default %(default)s)")
    parser.add_argument("--steps", type=int, default=1, help="for `step`: how many optimizer steps to run, then pause again")
    parser.add_argument("--from-seq", type=int, default=0, help="for `snapshot`: first seq to fetch")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the reply (default %(default)s)")
    parser.add_argument("--curve-dir", "--curve-keys", dest="curve_keys", metavar="DIR", help="CurveZMQ key directory, for a trainer bound beyond loopback")


def run(args: argparse.Namespace) -> int:
    request_args: dict = {}
    if args.cmd == "step":
        if args.steps < 1:
            raise UserError(f"--steps must be at least 1, got {args.steps}")
        request_args["n"] = args.steps
    if args.cmd == "snapshot":
        request_args["from_seq"] = args.from_seq
    with ControlClient(args.endpoint, curve_dir=args.curve_keys) as client:
        try:
            data = client.request(args.cmd, timeout=args.timeout, **request_args)
        except ControlError as exc:
            raise UserError(f"{args.cmd} ({args.endpoint}): {exc}") from None
    if args.cmd == "snapshot":
        frames = [msgpack.unpackb(p, raw=False, strict_map_key=False) for p in data.get("frames", [])]
        kinds: dict[str, int] = {}
        for f in frames:
            kinds[f.get("kind", "?")] = kinds.get(f.get("kind", "?"), 0) + 1
        data = {"frames": len(frames), "by_kind": kinds, "last_seq": data.get("last_seq")}
    print(f"{args.cmd}: ok")
    if data:
        print(json.dumps(data, ensure_ascii=False, indent=2, default=str))
    return 0
