"""The one exception type that reaches a user as a single line (tracebacks only with --debug)."""


class UserError(Exception):
    """Something the user gave was wrong: the message says what and where (file, line, field)."""

    exit_code = 2
