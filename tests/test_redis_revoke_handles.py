"""The revoke-handle suite of ``test_revoke_handles.py``, run again with the sessions in Redis and Redis
Cluster (the ``store`` fixture below replaces conftest's memory and SQLite stores)."""

import pytest

from .test_revoke_handles import *  # noqa: F403


@pytest.fixture
def store(redis_store):
    return redis_store
