"""The errors a command raises to end with a clear line and an exit code (no traceback)."""

from __future__ import annotations

__all__ = ["CommandError", "UsageError"]


class CommandError(Exception):
    """The command failed: print the message on one line, exit 1."""

    exit_code = 1


class UsageError(CommandError):
    """The command was called wrongly (a bad option value, a missing argument): exit 2."""

    exit_code = 2
