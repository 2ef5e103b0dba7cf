"""`lorascope train`: every TrainConfig field as an option, plus --watch (train in the background, watch here).

The options are generated from TrainConfig's fields, so the CLI and the config
cannot drift. `--watch` starts the trainer as a child process (its output goes to
the run's train.log) and runs `lorascope watch` in this terminal; when the UI
exits the trainer gets SIGINT (it saves and ends) unless `--detach`. The trainer
never imports the UI: they only meet over the sockets.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

from lorascope.protocol.errors import UserError

ENDPOINTS_WAIT_S = 120.0  # the child loads the model before it binds (the first embedded load dequantizes)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .config import TrainConfig

    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        meta = dict(f.metadata)
        help_text = meta.pop("help", "")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if f.type == "bool":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=help_text)
            continue
        kind = {"int": int, "float": float}.get(f.type, str)
        if default not in (None, [], ""):
            help_text += f" (default: {default})"
        parser.add_argument(flag, type=kind, default=default, help=help_text, **meta)
    parser.add_argument("--watch", action="store_true",
                        help="train in the background (log in the run folder) and watch it in this terminal")
    parser.add_argument("--detach", action="store_true", help="with --watch: keep training after the UI exits")


def run(args) -> int:
    from .config import TrainConfig

    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)}
    cfg = TrainConfig(**values)  # validates: UserError naming the field
    if args.watch:
        return _train_and_watch(cfg, args)
    _quiet_libraries()
    from .train import train

    result = train(cfg)
    print(f"run {result.run_id}: {result.reason} after {result.steps} steps, loss {result.final_loss:.4f}; "
          f"recording {result.run_dir / 'run.lsr'}, adapter {result.adapter_path}", file=sys.stderr)
    return 0 if result.reason in ("finished", "stopped") else 130 if result.reason == "interrupted" else 1


def _quiet_libraries() -> None:
    """Our progress line is the one progress display: silence the libraries' bars and info logs."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", category=FutureWarning)  # library deprecation notes are not the user's business
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:
        pass


# --------------------------------------------------------------------------- --watch
def _train_and_watch(cfg, args) -> int:
    run_id = cfg.run_id or time.strftime("%Y%m%d-%H%M%S")
    run_dir = Path(cfg.output_dir) / run_id
    if run_dir.exists() and any(run_dir.iterdir()):
        raise UserError(f"run_id: {run_dir} already exists")
    run_dir.mkdir(parents=True, exist_ok=True)
    argv = _argv_from_config(dataclasses.replace(cfg, run_id=run_id))
    log_path = run_dir / "train.log"
    command = [sys.executable, "-m", "lorascope.protocol.cli", "train", *argv]
    with open(log_path, "ab") as log:
        child = subprocess.Popen(command, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                 start_new_session=True)  # the terminal's Ctrl-C goes to the UI, not the trainer
    print(f"trainer pid {child.pid}, log {log_path}", file=sys.stderr)
    ends = _wait_for_endpoints(run_dir, cfg, child)
    if ends is None:
        print(f"lorascope train: the trainer exited with code {child.returncode} before it was ready; "
              f"see {log_path}:\n" + _tail(log_path), file=sys.stderr)
        return child.returncode or 1
    watch = [sys.executable, "-m", "lorascope.protocol.cli", "watch", ends["pub"], "--control", ends["control"]]
    if cfg.curve_dir:
        watch += ["--curve-dir", cfg.curve_dir]
    try:
        ui_code = subprocess.call(watch)  # inherits this terminal
    except KeyboardInterrupt:
        ui_code = 130
    if args.detach:
        print(f"trainer still running (pid {child.pid}); log {log_path}", file=sys.stderr)
        return ui_code
    if child.poll() is None:
        child.send_signal(signal.SIGINT)  # the trainer saves its adapter and ends the run cleanly
        try:
            child.wait(timeout=120)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    print(f"run {run_id}: trainer exited with code {child.returncode}; recording {run_dir / 'run.lsr'}",
          file=sys.stderr)
    return ui_code


def _wait_for_endpoints(run_dir: Path, cfg, child: subprocess.Popen) -> dict | None:
    """{"pub", "control"} to connect to once the trainer has bound (endpoints.json), or None if it died."""
    deadline = time.monotonic() + ENDPOINTS_WAIT_S
    path = run_dir / "endpoints.json"
    while time.monotonic() < deadline:
        if path.is_file():
            try:
                found = json.loads(path.read_text(encoding="utf-8"))
                return {"pub": _local(found["pub"]), "control": _local(found["control"])}
            except (ValueError, KeyError):
                pass
        if child.poll() is not None:
            return None
        time.sleep(0.1)
    # still loading: SUB and DEALER sockets connect whenever the trainer binds
    return {"pub": _local(cfg.pub), "control": _local(cfg.control)}


def _local(endpoint: str) -> str:
    """A bind-anywhere address is reached from this machine through loopback."""
    for anywhere in ("tcp://0.0.0.0:", "tcp://*:"):
        if endpoint.startswith(anywhere):
            return "tcp://127.0.0.1:" + endpoint[len(anywhere):]
    return endpoint


def _argv_from_config(cfg) -> list[str]:
    """The command-line options that reproduce `cfg` (what the --watch child is started with)."""
    argv: list[str] = []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        flag = "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            argv.append(flag if value else "--no-" + f.name.replace("_", "-"))
        elif isinstance(value, list):
            if value:
                argv += [flag, *map(str, value)]
        elif value is not None:
            argv += [flag, str(value)]
    return argv


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
