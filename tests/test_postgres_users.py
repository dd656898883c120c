"""The per-user suite of ``test_users.py``, run again with the sessions in PostgreSQL."""

import pytest

from .test_users import *  # noqa: F403


@pytest.fixture
def store(postgres_store):
    return postgres_store
