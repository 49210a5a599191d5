"""Shared test fixtures. Test helpers live in ``tests/support`` (importable as ``support.*``
through pytest's ``pythonpath`` setting in pyproject.toml)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def one_thread():
    """Tiny models run faster on one thread, and are immune to a busy machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
