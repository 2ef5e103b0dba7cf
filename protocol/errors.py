"""The one exception type that reaches a user as a single line (tracebacks only with --debug)."""


class UserError(Exception):
    """Something the user gave was wrong: the message says what and where (file, line, field)."""

    exit_code = 2


def read_user_text(path, what: str) -> str:
    """The text of a file the user named (dataset, probes, edits): a missing or non-UTF-8 file is a UserError."""
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: {what} not found")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
