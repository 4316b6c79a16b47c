"""Errors the ML code raises for bad input.

The CLI turns a ``ConfigError`` into a one-line message and a non-zero exit;
anything else is a bug and keeps its traceback.
"""


class ConfigError(ValueError):
    """A user-supplied option, file or combination that cannot work."""


def one_line(message: str) -> str:
    """The message with every unprintable character escaped as Python would.

    User data (a path, a label) ends up in error messages, and a newline, a
    record separator or a bidi override inside it would split the one error
    line or make it lie about what it quotes.
    """
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in message)
