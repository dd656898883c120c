"""Every built-in store passes the public conformance suite."""

import pytest

from hug_cookie_sessions import HugStoreAdapter, MemoryStore, SQLiteStore
from hug_cookie_sessions.testing import HashedKeyConformance, StoreConformance, UserIndexConformance

from .conftest import needs_hug


class TestMemoryStore(StoreConformance, UserIndexConformance, HashedKeyConformance):
    @pytest.fixture
    def store(self):
        return MemoryStore()


class TestSQLiteStore(StoreConformance, UserIndexConformance, HashedKeyConformance):
    @pytest.fixture
    def store(self, tmp_path):
        return SQLiteStore(str(tmp_path / "sessions.sqlite3"))


# -- never a session ID: the middleware hands every store a one-way hash of it ----------------------


@needs_hug
class TestHugAdapterStoresNoSessionId(HashedKeyConformance):
    @pytest.fixture
    def store(self):
        import hug.store

        return HugStoreAdapter(hug.store.InMemoryStore())


class TestRedisStoresNoSessionId(HashedKeyConformance):
    @pytest.fixture
    def store(self, redis_store):
        return redis_store


class TestPostgresStoresNoSessionId(HashedKeyConformance):
    @pytest.fixture
    def store(self, postgres_store):
        return postgres_store


class TestAsyncPostgresStoresNoSessionId(HashedKeyConformance):
    @pytest.fixture
    def store(self, async_postgres_store):
        return async_postgres_store
