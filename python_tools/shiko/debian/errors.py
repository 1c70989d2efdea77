"""The errors of the Debian tools: one line each, never a traceback."""

from python_tools.shiko.errors import UserError


class DebError(UserError):
    """A problem to report in one line (no traceback); the command adds the target."""


class NotFound(DebError):
    """The archive answered 404 (or the file:// path does not exist)."""
