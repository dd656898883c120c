"""The behaviour suite of ``test_lifecycle.py``, run again with the sessions in PostgreSQL.

The star import collects the same tests in this module, where the ``store``
fixture below replaces conftest's memory and SQLite stores. On ASGI the
blocking ``PostgresStore`` runs in worker threads, as any blocking store does;
``test_postgres_apps.py`` covers ``AsyncPostgresStore`` behind ``falcon.asgi.App``.
"""

import pytest

from .test_lifecycle import *  # noqa: F403


@pytest.fixture
def store(postgres_store):
    return postgres_store
