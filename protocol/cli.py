"""The `lorascope` console script: a thin dispatcher over subcommands.

It lives in `protocol` because that is the one package both installs have (a
laptop that only watches has no torch). Each subcommand is a module with
`add_arguments(parser)` and `run(args) -> int`, imported only when it is
chosen, so `lorascope replay` never pays for (or needs) torch.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from .errors import UserError

# name -> (module, one-line help). Order is the order of `lorascope --help`.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "train": ("lorascope.trainer.cli_train", "fine-tune with LoRA and publish what the adapter does"),
    "watch": ("lorascope.tui.cli", "watch a running trainer live"),
    "replay": ("lorascope.tui.cli", "replay a recorded run in the UI"),
    "compare": ("lorascope.tui.cli", "show two recorded runs side by side"),
    "inspect": ("lorascope.protocol.inspect", "summarise a recording without opening the UI"),
    "control": ("lorascope.protocol.control_cli", "send one control request (pause, resume, step, save, stop) to a trainer"),
    "keys": ("lorascope.protocol.keys_cli", "create CurveZMQ keys for binding beyond loopback"),
    "edit": ("lorascope.trainer.edits_cli", "apply manual logit edits from a file to a running trainer"),
    "estimate": ("lorascope.trainer.resources", "estimate memory for a model, batch and length before training"),
    "rank": ("lorascope.trainer.rank", "score a dataset at the base model and write a curriculum order"),
}


def _root_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lorascope",
        description="A live microscope for LoRA fine-tuning.",
        epilog="Run `lorascope COMMAND --help` for a command's options.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in SUBCOMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    if debug:
        argv.remove("--debug")
    if not argv or argv[0] not in SUBCOMMANDS:
        parser = _root_parser()
        if argv and not argv[0].startswith("-"):
            parser.error(f"unknown command {argv[0]!r} (choose from {', '.join(SUBCOMMANDS)})")
        parser.parse_args(argv)
        parser.print_help()
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    module_name, help_text = SUBCOMMANDS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        missing = getattr(exc, "name", None) or str(exc)
        print(
            f"lorascope {name}: needs {missing}, which is not installed "
            f"(the training side: pip install 'lorascope[train]')",
            file=sys.stderr,
        )
        if debug:
            raise
        return 2
    parser = argparse.ArgumentParser(prog=f"lorascope {name}", description=help_text)
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    module.add_arguments(parser, name) if _takes_name(module) else module.add_arguments(parser)
    args = parser.parse_args(rest)
    args.debug = debug or args.debug
    args.command = name
    try:
        return int(module.run(args) or 0)
    except UserError as exc:
        if args.debug:
            raise
        print(f"lorascope {name}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `lorascope inspect run.lsr | head`: the reader left; that is not an error
        sys.stdout = open(os.devnull, "w")
        return 0


def _takes_name(module) -> bool:
    """watch/replay/compare share one module: its add_arguments takes the command name."""
    import inspect

    return len(inspect.signature(module.add_arguments).parameters) >= 2


if __name__ == "__main__":
    sys.exit(main())
