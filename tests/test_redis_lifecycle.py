"""The behaviour suite of ``test_lifecycle.py``, run again with the sessions in Redis and Redis Cluster.

The star import collects the same tests in this module, where the ``store``
fixture below replaces conftest's memory and SQLite stores.
"""

import pytest

from .test_lifecycle import *  # noqa: F403


@pytest.fixture
def store(redis_store):
    return redis_store
