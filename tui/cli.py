"""`lorascope watch`, `lorascope replay`, `lorascope compare`: the UI's subcommands."""

from __future__ import annotations

import argparse
from pathlib import Path

from lorascope.protocol.errors import UserError

DEFAULT_WATCH = "tcp://127.0.0.1:5555"


def add_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    if name == "watch":
        parser.add_argument("endpoint", nargs="?", default=DEFAULT_WATCH,
                            help=f"the trainer's publisher (default {DEFAULT_WATCH}); "
                                 "a run directory with endpoints.json works too")
        parser.add_argument("--control", help="the trainer's control endpoint (default: publisher port + 1)")
        parser.add_argument("--curve-dir", help="CurveZMQ key folder, for a trainer bound beyond loopback")
    elif name == "replay":
        parser.add_argument("run_file", help="a recording (.lsr), or a run directory containing run.lsr")
        parser.add_argument("--step", type=int, help="open at this step (default: the last)")
    elif name == "compare":
        parser.add_argument("run_a", help="first recording (.lsr)")
        parser.add_argument("run_b", help="second recording (.lsr)")
        parser.add_argument("--step", type=int, help="open at this step (default: the last common step)")


def resolve_recording(value: str) -> Path:
    """A .lsr file, or a run directory holding one."""
    path = Path(value)
    if path.is_dir():
        candidates = sorted(path.glob("*.lsr"))
        if not candidates:
            raise UserError(f"{path}: no recording (*.lsr) in this directory")
        return candidates[0]
    if not path.exists():
        raise UserError(f"{path}: no such recording")
    return path


def resolve_watch(endpoint: str, control: str | None) -> tuple[str, str | None]:
    """An endpoint, or a run directory whose endpoints.json says where the trainer listens."""
    path = Path(endpoint)
    if "://" not in endpoint and (path.is_dir() or path.name == "endpoints.json"):
        import json

        file = path / "endpoints.json" if path.is_dir() else path
        try:
            data = json.loads(file.read_text())
        except FileNotFoundError:
            raise UserError(f"{file}: no endpoints.json (is the trainer running with this run directory?)") from None
        except ValueError as exc:
            raise UserError(f"{file}: not valid JSON ({exc})") from None
        pub = data.get("pub") or data.get("publisher")
        if not pub:
            raise UserError(f"{file}: no 'pub' endpoint in it")
        return pub, control or data.get("control")
    if "://" not in endpoint:
        raise UserError(f"watch: {endpoint!r} is not an endpoint like tcp://127.0.0.1:5555 (nor a run directory)")
    return endpoint, control


def check_recording(path: Path) -> None:
    """Open and index it once: a bad file fails here, as one line, before the screen opens
    (the index is cached beside the file, so the app's own opening is quick)."""
    from lorascope.protocol.codec import ProtocolError

    from .replay_model import ReplayModel

    try:
        ReplayModel(path).close()
    except ProtocolError as exc:
        raise UserError(f"{path}: {exc}") from None


def run(args: argparse.Namespace) -> int:
    from .app import LorascopeApp

    if args.command == "watch":
        pub, control = resolve_watch(args.endpoint, args.control)
        app = LorascopeApp.live(pub, control, curve_dir=args.curve_dir)
    elif args.command == "replay":
        path = resolve_recording(args.run_file)
        check_recording(path)
        app = LorascopeApp.replay(path, start_step=args.step)
    else:
        a, b = resolve_recording(args.run_a), resolve_recording(args.run_b)
        check_recording(a), check_recording(b)
        app = LorascopeApp.compare(a, b, start_step=args.step)
    app.run()
    return int(app.return_code or 0)
