"""Flower is served as a monitor: its control routes are gone, its read routes stay."""

from orchestrator.services.flower_routes import _pattern, make_read_only


def test_control_routes_are_dropped_read_routes_kept():
    from flower import app, urls

    make_read_only()
    served = {_pattern(h) for h in app.default_handlers}  # the very list Flower builds its app from
    assert {"/api/workers", "/api/tasks", r"/api/task/info/(.*)"} <= served
    assert not [p for p in served if "revoke" in p or "shutdown" in p or "apply" in p or "send-task" in p]
    assert make_read_only() == 0 and len(urls.handlers) == len(served)  # idempotent
