"""``core.artifacts.write_atomic``: a file appears whole or not at all."""

from __future__ import annotations

import pytest

from core.artifacts import write_atomic


def test_a_write_lands_whole_under_its_name_with_its_parents_made(tmp_path):
    target = tmp_path / "a" / "b" / "out.txt"
    assert write_atomic(target, lambda tmp: tmp.write_text("hello")) == target
    assert target.read_text() == "hello"
    assert [p.name for p in target.parent.iterdir()] == ["out.txt"]  # no temporary file left behind


def test_a_failing_write_leaves_the_target_untouched_and_no_temporary_file(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("before")
    seen = []

    def half_then_fail(tmp):
        seen.append(tmp)
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_atomic(target, half_then_fail)
    assert target.read_text() == "before"
    assert seen and seen[0].parent == tmp_path and seen[0].name.startswith(".out.txt.") and seen[0].suffix == ".part"
    assert not seen[0].exists() and [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_a_write_that_fails_before_creating_anything_is_fine(tmp_path):
    def fail(_tmp):
        raise ValueError("nothing written")

    with pytest.raises(ValueError):
        write_atomic(tmp_path / "x.bin", fail)
    assert list(tmp_path.iterdir()) == []
