"""Errors the ML code raises for bad input.

The CLI turns a ``ConfigError`` into a one-line message and a non-zero exit;
anything else is a bug and keeps its traceback.
"""


class ConfigError(ValueError):
    """A user-supplied option, file or combination that cannot work."""
