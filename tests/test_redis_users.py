"""The per-user suite of ``test_users.py``, run again with the sessions in Redis and Redis Cluster.

The star import collects the same tests in this module, where the ``store``
fixture below replaces conftest's memory and SQLite stores.
"""

import pytest

from .test_users import *  # noqa: F403


@pytest.fixture
def store(redis_store):
    return redis_store
