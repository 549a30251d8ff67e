"""Every test starts from an empty registry (the built-in suite comes back on the first lookup)."""

import pytest

from flanforge.mixtures import registry


@pytest.fixture(autouse=True)
def clean_registry():
    registry.reset()
    yield
    registry.reset()
