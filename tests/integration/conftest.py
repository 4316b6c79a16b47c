"""Fixtures the integration tests share: a tiny trained classifier (tests/tiny_classifier.py's recipe)."""

import pytest

from tests.conftest import unique
from tests.tiny_classifier import tiny_dataset, tiny_run


@pytest.fixture(scope="module")
def classifier(sqlite_stack):
    """A dataset of 3 synthetic artists (9 paintings each) and a baseline CNN trained on it: (name, run id).

    Per module, not per session: a module's style batches on it find their controls and reusable pairs
    by the classifier's run, so two modules sharing one would see each other's rows."""
    name = tiny_dataset(sqlite_stack, unique("style"))
    return name, tiny_run(sqlite_stack, name)
