"""Flower as a monitor only: the routes that would change the cluster are not served.

Flower's API can shut workers down, resize pools, revoke or send tasks. In
atelier the job table is the source of truth, so a task revoked or sent behind
its back would leave rows that lie; stopping work goes through `atelier cancel`.
Flower has no read-only switch, so the control routes are dropped from its
route table before its application is built (they answer 404).
"""

from __future__ import annotations

import re

CONTROL = re.compile(
    r"^/api/(worker/(shutdown|pool|queue)/|task/(apply|async-apply|send-task|abort|timeout|"
    r"rate-limit|revoke)/)"
)


def make_read_only() -> int:
    """Remove Flower's control routes in place (Flower's app reads this very list); returns how many."""
    from flower import urls

    kept = [h for h in urls.handlers if not CONTROL.match(_pattern(h))]
    removed = len(urls.handlers) - len(kept)
    urls.handlers[:] = kept
    return removed


def _pattern(handler) -> str:
    return handler.regex.pattern if hasattr(handler, "regex") else handler[0]
